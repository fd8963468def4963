"""fit.max_events 3: tokens that rise, fall back and then drop (the synthetic control's value
tokens) get three events where BIC asks for them; two stays the default and its output is unchanged."""
import numpy as np
import pytest

from tokenclock.curves import logistic
from tokenclock.errors import ConfigError
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_trajectories
from tokenclock.stages.fit.models import MIN_POINTS_EVENTS

STEPS = np.unique(np.geomspace(1, 2000, 58).round())
U = np.log(STEPS)


def three_stage(n: int, seed: int = 0, noise: float = 0.08):
    """(n, K) trajectories: a rise early, a fall back, a large drop late; and their events."""
    rng = np.random.default_rng(seed)
    mu = np.stack([rng.uniform(1.2, 2.0, n), rng.uniform(3.0, 3.8, n), rng.uniform(5.0, 6.8, n)], 1)
    a = np.stack([-rng.uniform(1.0, 1.5, n), rng.uniform(1.0, 1.5, n), rng.uniform(3.0, 6.0, n)], 1)
    b = rng.uniform(0.2, 1.0, n)
    Y = b[:, None] + sum(a[:, j, None] * logistic((mu[:, j, None] - U[None, :]) / 0.3) for j in range(3))
    return Y + rng.normal(0, noise, Y.shape), mu, a


def test_three_stages_get_three_events_ordered_by_midpoint():
    Y, mu, a = three_stage(300)
    two = fit_trajectories(Y, U, FitConfig(max_events=2), progress=False)
    three = fit_trajectories(Y, U, FitConfig(max_events=3), progress=False)
    assert "sigmoid3" not in two.summary["model_share"] and "sse_sigmoid3" not in two.tokens
    assert three.summary["model_share"]["sigmoid3"] > 0.9
    n3 = np.asarray(three.tokens["n_events"]) == 3
    assert np.median(np.asarray(three.tokens["sse"])[n3]) < 0.5 * np.median(np.asarray(two.tokens["sse"])[n3])
    ev = {k: np.asarray(v) for k, v in three.events.items()}
    m = ev["mu"][np.isin(ev["tok_idx"], np.flatnonzero(n3))].reshape(-1, 3)
    amp = ev["a"][np.isin(ev["tok_idx"], np.flatnonzero(n3))].reshape(-1, 3)
    assert (np.diff(m, axis=1) >= 0).all()  # ordered by midpoint
    assert np.median(np.abs(m - mu[n3]), 0).max() < 0.1          # rise, fall back, drop recovered
    assert np.median(np.abs(amp - a[n3]) / np.abs(a[n3]), 0).max() < 0.15
    assert (np.sign(amp) == np.sign(a[n3])).mean() > 0.95
    assert three.summary["max_events"] == 3


def test_a_two_step_token_keeps_two_events_under_max_events_3():
    rng = np.random.default_rng(3)
    Y = 1 + 2 * logistic((3.0 - U) / 0.3)[None, :] + 3 * logistic((5.5 - U) / 0.3)[None, :]
    Y = Y + rng.normal(0, 0.08, (200, len(U)))
    res = fit_trajectories(Y, U, FitConfig(max_events=3), progress=False)
    assert np.mean(np.asarray(res.tokens["n_events"]) == 2) > 0.85  # BIC does not pay for a third


def test_three_events_need_enough_checkpoints():
    u = U[:: len(U) // (MIN_POINTS_EVENTS[3] - 2)][: MIN_POINTS_EVENTS[3] - 1]
    Y, _, _ = three_stage(20)
    res = fit_trajectories(Y[:, :: len(U) // (MIN_POINTS_EVENTS[3] - 2)][:, : len(u)], u,
                           FitConfig(max_events=3), progress=False)
    assert res.summary["model_share"]["sigmoid3"] == 0 and np.isnan(res.tokens["sse_sigmoid3"]).all()


@pytest.mark.parametrize("bad", [4, -1, 2.5])
def test_max_events_outside_0_to_3_is_refused_with_the_fix(bad):
    with pytest.raises(ConfigError, match="fit.max_events must be 0, 1, 2 or 3") as e:
        FitConfig(max_events=bad)
    assert "use 2" in str(e.value)
