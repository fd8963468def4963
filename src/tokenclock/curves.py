"""The curve functions of a learning event, the one home of the logistic in tokenclock: pure math,
no I/O (numpy in, numpy out; torch tensors also work where noted). The fitter (stages/fit), the
spectrum's reconstruction and the report's fitted curves all use these.

An event is `a * s((mu - u) / w)`: s the logistic function, u = ln x, a the drop in nats (a > 0:
loss falls by a around u = mu; a < 0: a rise), w > 0 the width. A token's curve is
`l(u) = b + sum_j a_j * s((mu_j - u) / w_j)`; b is the final loss level.
"""
from __future__ import annotations

import numpy as np


def logistic(z):
    """s(z) = 1 / (1 + exp(-z)) without overflow warnings for any finite z (numpy or torch)."""
    if not isinstance(z, np.ndarray) and hasattr(z, "sigmoid"):
        return z.sigmoid()  # torch: stable already
    z = np.asarray(z, dtype=float)
    # exp of a non-positive number never overflows: pick the branch per sign.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logistic_prime(z):
    """s'(z) = s(z) (1 - s(z)), written with exp(-|z|) so it neither overflows nor cancels."""
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


def event(u, a, mu, w):
    """One event `a * s((mu - u) / w)`: a drop of a nats centred at u = mu (broadcasts)."""
    return a * logistic((np.asarray(mu) - np.asarray(u)) / np.asarray(w))


def event_du(u, a, mu, w):
    """d/du of `a * s((mu - u) / w)` = -(a / w) * s'(z), z = (mu - u) / w, s' = s (1 - s).

    Negative for a learning event (a > 0): the loss falls as u grows. The spectrum's prediction of
    -dL/du is the sum of -event_du over events."""
    z = (np.asarray(mu) - np.asarray(u)) / np.asarray(w)
    return -(np.asarray(a) / np.asarray(w)) * logistic_prime(z)


def curve(u, b, a=(), mu=(), w=(), c: float = 0.0, u_end: float | None = None):
    """A token's curve l(u) = b + c (u - u_end) + sum_j a_j s((mu_j - u) / w_j) (parameters scalars
    or 1-D lists). c, in nats per unit of u, is non-zero only for a token whose best model is linear
    in ln x (fit/tokens.parquet column c); u_end, the last observed u, defaults to u[-1]."""
    u = np.asarray(u, dtype=float)
    out = np.full_like(u, float(b))
    if c:
        out = out + c * (u - (u.reshape(-1)[-1] if u_end is None else u_end))
    for aj, mj, wj in zip(np.atleast_1d(a), np.atleast_1d(mu), np.atleast_1d(w)):
        out = out + event(u, aj, mj, wj)
    return out


def sigmoid1(u, b, a, mu, w):
    """The 4-parameter single-event model in curve_fit's calling convention."""
    return b + event(u, a, mu, w)


def sigmoid2(u, b, a1, mu1, w1, a2, mu2, w2):
    """The 7-parameter two-event model in curve_fit's calling convention."""
    return b + event(u, a1, mu1, w1) + event(u, a2, mu2, w2)


# ----------------------------------------------------------------------------- bounds and guesses


def mu_bounds(u, margin: float = 0.25) -> tuple[float, float]:
    """Allowed midpoints: the observed u range extended by `margin` x span on each side."""
    u = np.asarray(u, dtype=float)
    span = float(u[-1] - u[0])
    return float(u[0] - margin * span), float(u[-1] + margin * span)


def width_bounds(u, w_min_frac: float = 0.02, w_max_frac: float = 0.5) -> tuple[float, float]:
    """Allowed widths as fractions of the observed span of u (the `span` floor rule)."""
    u = np.asarray(u, dtype=float)
    span = float(u[-1] - u[0])
    return w_min_frac * span, w_max_frac * span


def spacing_nodes(u) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint spacing as a piecewise-linear function of u: nodes at the midpoints of
    consecutive checkpoints (K-1,) and the gap u[k+1] - u[k] of each (K-1,)."""
    u = np.asarray(u, dtype=float)
    return (u[1:] + u[:-1]) / 2, np.diff(u)


def local_spacing(u, mu) -> np.ndarray:
    """Local checkpoint spacing du at midpoints mu (broadcasts): the gap between the checkpoints
    around mu, interpolated linearly between the gaps' midpoints; beyond the first or last
    midpoint (and outside the observed range), the edge gap. Constant on an evenly spaced axis."""
    nodes, gaps = spacing_nodes(u)
    return np.interp(np.asarray(mu, dtype=float), nodes, gaps)


def width_floor(u, mu, w_min_spacing: float) -> np.ndarray:
    """Smallest width at midpoints mu under the `spacing` rule: w_min_spacing x local_spacing."""
    return w_min_spacing * local_spacing(u, mu)


def grid(u, n_mu: int = 32, n_w: int = 6, margin: float = 0.25, w_min_frac: float = 0.02,
         w_max_frac: float = 0.5, w_min_spacing: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, w) grid cells, each of shape (n_mu * n_w,): mu evenly spaced over mu_bounds, w
    log-spaced over width_bounds. Every cell is a candidate initial guess for every token.

    With w_min_spacing (the `spacing` rule) the widths start at the smallest local floor
    instead, and each cell's width is raised to the floor at its own mu (so every cell is a
    curve the fitter may return)."""
    lo, hi = mu_bounds(u, margin)
    wlo, whi = width_bounds(u, w_min_frac, w_max_frac)
    mus = np.linspace(lo, hi, n_mu)
    if w_min_spacing is not None:
        wlo = w_min_spacing * float(spacing_nodes(u)[1].min())
    ws = np.geomspace(wlo, whi, n_w)
    m, ww = np.meshgrid(mus, ws, indexing="ij")
    if w_min_spacing is not None:
        ww = np.maximum(ww, width_floor(u, m, w_min_spacing))
    return m.ravel(), ww.ravel()


def basis(u, mu, w) -> np.ndarray:
    """Basis curves s((mu_g - u_k) / w_g) of shape (K, G) for grid cells (mu, w) of shape (G,)."""
    u = np.asarray(u, dtype=float)[:, None]
    return logistic((np.asarray(mu, dtype=float)[None, :] - u) / np.asarray(w, dtype=float)[None, :])


def initial_guess(u, y, n_edge: int = 3) -> tuple[float, float, float, float]:
    """A careful single-trajectory guess (b, a, mu, w): b and b + a from the means of the last and
    first `n_edge` points, mu where the trajectory crosses halfway (linear interpolation on a
    running median), w a tenth of the span. Used by per-trajectory fitters (scipy baseline)."""
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    n = max(1, min(n_edge, len(y) // 3))
    b = float(np.mean(y[-n:]))
    top = float(np.mean(y[:n]))
    a = top - b
    # running median of 3 to resist single spikes
    ys = np.median(np.stack([np.r_[y[0], y[:-1]], y, np.r_[y[1:], y[-1]]]), axis=0)
    half = b + a / 2
    side = np.sign(a) * (ys - half)  # > 0 before the midpoint
    cross = np.nonzero((side[:-1] > 0) & (side[1:] <= 0))[0]
    if len(cross) and a != 0:
        k = int(cross[0])
        d = ys[k] - ys[k + 1]
        t = 0.5 if d == 0 else float(np.clip((ys[k] - half) / d, 0, 1))
        mu = float(u[k] + t * (u[k + 1] - u[k]))
    else:
        mu = float(np.median(u))
    w = float(u[-1] - u[0]) / 10
    return b, a, mu, w
