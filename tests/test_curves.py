import warnings

import numpy as np
from numpy.testing import assert_allclose

from tokenclock import curves as sg


def test_logistic_stable_and_symmetric():
    z = np.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = sg.logistic(z)
    assert np.isfinite(s).all()
    assert_allclose(s + sg.logistic(-z), 1.0)
    assert s[3] == 0.5 and s[0] == 0.0 and s[-1] == 1.0


def test_event_drop_and_rise():
    u = np.linspace(0, 10, 201)
    drop = sg.event(u, 2.0, 5.0, 0.5)
    assert_allclose([drop[0], drop[100], drop[-1]], [2.0, 1.0, 0.0], atol=1e-4)
    rise = sg.curve(u, 3.0, [-1.0], [5.0], [0.5])
    assert rise[0] < rise[-1]
    assert_allclose(rise[-1], 3.0, atol=1e-4)


def test_event_du_matches_finite_difference():
    u = np.linspace(0, 10, 2001)
    f = sg.event(u, 1.5, 4.0, 0.7)
    assert_allclose(sg.event_du(u, 1.5, 4.0, 0.7)[1:-1], np.gradient(f, u)[1:-1], atol=1e-4)


def test_two_event_model_and_grid():
    u = np.log(np.geomspace(10, 1e4, 40))
    assert_allclose(sg.sigmoid2(u, 1, 2, 3, 0.5, 1, 5, 0.5),
                    sg.curve(u, 1, [2, 1], [3, 5], [0.5, 0.5]))
    mu, w = sg.grid(u, n_mu=8, n_w=3)
    lo, hi = sg.mu_bounds(u)
    assert mu.shape == w.shape == (24,)
    assert mu.min() == lo and mu.max() == hi
    assert sg.basis(u, mu, w).shape == (40, 24)


def test_initial_guess_near_truth():
    u = np.log(np.geomspace(10, 1e4, 50))
    y = sg.sigmoid1(u, 2.0, 4.0, 5.0, 0.4)
    b, a, mu, w = sg.initial_guess(u, y)
    assert_allclose([b, a, mu], [2.0, 4.0, 5.0], atol=0.1)
    assert w > 0


def test_local_spacing_follows_the_checkpoints():
    """Gaps of 1, and of 0.25 between u = 3 and 4: the spacing is the gap around mu, linear
    between the gaps' midpoints, the edge gap beyond them."""
    u = np.array([0.0, 1, 2, 3, 3.25, 3.5, 3.75, 4, 5, 6])
    assert_allclose(sg.local_spacing(u, [1.5, 3.375, 3.625, -5.0, 0.2, 9.0]),
                    [1.0, 0.25, 0.25, 1.0, 1.0, 1.0])
    assert_allclose(sg.local_spacing(u, 2.8125), 0.625)  # halfway from node 2.5 (1) to 3.125 (0.25)
    assert_allclose(sg.width_floor(u, [1.5, 3.5], 0.2), [0.2, 0.05])
    even = np.log(np.geomspace(10, 1e4, 31))
    assert_allclose(sg.local_spacing(even, np.linspace(0, 12, 7)), np.log(10) / 10)


def test_grid_reaches_the_smallest_local_floor():
    u = np.r_[np.linspace(0, 3, 7), np.linspace(3.1, 4, 10), np.linspace(4.5, 8, 8)]
    mu, w = sg.grid(u, n_mu=16, n_w=5, w_min_spacing=0.5)
    assert_allclose(w.min(), 0.5 * np.diff(u).min())
    assert (w >= sg.width_floor(u, mu, 0.5) * (1 - 1e-12)).all()  # every cell is feasible
    assert_allclose(w.max(), 0.5 * (u[-1] - u[0]))
    # the span rule (no w_min_spacing): widths log-spaced from w_min_frac x span, as before
    mu0, w0 = sg.grid(u, n_mu=16, n_w=5)
    assert_allclose(np.unique(w0), np.geomspace(0.02 * 8, 0.5 * 8, 5))
    assert_allclose(mu0, mu)
