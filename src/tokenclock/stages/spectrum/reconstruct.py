"""The spectrum's math (numpy only, no files): the measured mean-loss curve and its derivative
-dL/du, the reconstruction of both from the events, the density rho(u) (kernel and histogram),
its bandwidth and the share of the measured drop that the events carry.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from tokenclock.curves import logistic, logistic_prime
from tokenclock.errors import DataError

CHUNK_ELEMS = 1 << 22  # float64 elements per (events x grid) or (ckpt x columns) block: 32 MiB


# ----------------------------------------------------------------------------- measured curve


def measured_curve(loss_kn: np.ndarray, keep_mask: np.ndarray | None = None,
                   chunk_columns: int | None = None) -> np.ndarray:
    """L(u_k) = mean over tokens of the loss at each kept checkpoint, (K',) float64.

    Streams the (K, N) matrix (a memmap is fine) in column blocks, accumulating in float64."""
    K, N = loss_kn.shape
    rows = np.arange(K) if keep_mask is None else np.flatnonzero(np.asarray(keep_mask, bool))
    if keep_mask is not None and len(keep_mask) != K:
        raise DataError(f"keep_mask has {len(keep_mask)} entries, the loss matrix {K} rows")
    if N == 0:
        raise DataError("the loss matrix has no token columns", "re-run `tokenclock trace`")
    step = chunk_columns or max(1, CHUNK_ELEMS // max(len(rows), 1))
    total = np.zeros(len(rows))
    contiguous = len(rows) > 0 and rows[-1] - rows[0] + 1 == len(rows)
    for c0 in range(0, N, step):
        block = (loss_kn[rows[0]:rows[-1] + 1, c0:c0 + step] if contiguous
                 else loss_kn[rows, c0:c0 + step])
        block = np.asarray(block, dtype=np.float64)  # (K', chunk)
        sums = block.sum(axis=1)
        if not np.all(np.isfinite(sums)):
            bad = int((~np.isfinite(block)).sum())
            raise DataError(f"loss matrix has {bad} NaN/inf values in columns {c0}..{c0 + step - 1}",
                            "re-run `tokenclock trace` (a checkpoint may have diverged)")
        total += sums
    return total / N


def measured_derivative(L: np.ndarray, u: np.ndarray, smooth: int = 2) -> np.ndarray:
    """-dL/du at each u_k from the measured curve, (K,).

    smooth = h > 0: slope at u_k of a least-squares quadratic through the 2h+1 nearest checkpoints
    (window shifted, not shrunk, at the ends) -- a Savitzky-Golay derivative that works on a
    non-uniform grid and is exact for quadratics. smooth = 0: second-order central differences."""
    L = np.asarray(L, np.float64)
    u = np.asarray(u, np.float64)
    K = len(u)
    if L.shape != u.shape or L.ndim != 1:
        raise DataError(f"curve and axis lengths differ ({L.shape} vs {u.shape})")
    if K < 3:
        raise DataError(f"need at least 3 checkpoints for a derivative, got {K}",
                        "trace more checkpoints")
    if not np.all(np.diff(u) > 0):
        raise DataError("the axis is not strictly increasing", "check the trace's axis.parquet")
    if smooth == 0:
        return -np.gradient(L, u, edge_order=2)
    W = min(2 * smooth + 1, K)
    start = np.clip(np.arange(K) - W // 2, 0, K - W)
    idx = start[:, None] + np.arange(W)[None, :]                   # (K, W)
    scale = (u[-1] - u[0]) / (K - 1)                               # conditions the normal equations
    du = (u[idx] - u[:, None]) / scale                             # (K, W)
    X = np.stack([np.ones_like(du), du, du * du], axis=-1)          # (K, W, 3)
    XtX = np.einsum("kwi,kwj->kij", X, X)
    Xty = np.einsum("kwi,kw->ki", X, L[idx])
    coef = np.linalg.solve(XtX, Xty[..., None])[..., 0]             # (K, 3)
    return -coef[:, 1] / scale


# ----------------------------------------------------------------------------- reconstruction


def _event_arrays(events: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(events["a"], np.float64)
    mu = np.asarray(events["mu"], np.float64)
    w = np.asarray(events["width"], np.float64)
    if not (a.shape == mu.shape == w.shape):
        raise DataError("event columns a, mu, width have different lengths")
    if np.any(~np.isfinite(a) | ~np.isfinite(mu) | ~(w > 0)):
        raise DataError("events have non-finite a/mu or non-positive width",
                        "re-run `tokenclock fit`")
    return a, mu, w


def _sum_over_events(events: Mapping[str, Any], u: np.ndarray, kind: str) -> np.ndarray:
    """sum_e a_e/w_e s'((mu_e-u)/w_e)  (kind='rate')  or  sum_e a_e s((mu_e-u)/w_e)  (kind='level')."""
    a, mu, w = _event_arrays(events)
    u = np.asarray(u, np.float64)
    out = np.zeros(len(u))
    step = max(1, CHUNK_ELEMS // max(len(u), 1))
    for e0 in range(0, len(a), step):
        sl = slice(e0, e0 + step)
        z = (mu[sl, None] - u[None, :]) / w[sl, None]              # (events, K)
        if kind == "rate":
            out += (a[sl] / w[sl]) @ logistic_prime(z)
        else:
            out += a[sl] @ logistic(z)
    return out


def reconstruct_derivative(events: Mapping[str, Any], n_tok: int, u: np.ndarray) -> np.ndarray:
    """-dL/du = (1/N) sum_e (a_e / w_e) s'((mu_e - u) / w_e), at each u, (K,)."""
    return _sum_over_events(events, u, "rate") / n_tok


def reconstruct_derivative_discrete(events: Mapping[str, Any], n_tok: int, u: np.ndarray,
                                    smooth: int) -> np.ndarray:
    """-dL/du of the events' summed level curve (1/N) sum_e a_e s((mu_e - u) / w_e), taken at the
    axis points with the same operator as the measured derivative (measured_derivative): on a
    sparse axis an event narrower than the spacing is a step the measured slope spreads over the
    gap, and this compares like with like; on a dense axis it equals reconstruct_derivative."""
    return measured_derivative(_sum_over_events(events, u, "level") / n_tok, u, smooth)


def reconstruct_curve(tokens_b: np.ndarray, events: Mapping[str, Any], n_tok: int,
                      u: np.ndarray, tokens_c: np.ndarray | None = None) -> np.ndarray:
    """Mean of the fitted token curves b_i + c_i (u - u_K) + sum_j a_j s((mu_j - u) / w_j), at each
    u, (K,); c_i is the slope of tokens whose best model is linear in ln x (0 otherwise)."""
    u = np.asarray(u, np.float64)
    lin = 0.0 if tokens_c is None else float(np.nansum(tokens_c)) * (u - u[-1])
    return (float(np.sum(np.asarray(tokens_b, np.float64))) + lin + _sum_over_events(events, u, "level")) / n_tok


def spectrum_density(events: Mapping[str, Any], n_tok: int, u_grid: np.ndarray,
                     bandwidth: float) -> np.ndarray:
    """rho(u) = (1/N) sum_e a_e N(u; mu_e, bandwidth^2): the Gaussian-smoothed spectrum, (G,).
    Its integral over a grid that covers the events is the mean net drop per token, sum_e a_e / N."""
    a, mu, _ = _event_arrays(events)
    u_grid = np.asarray(u_grid, np.float64)
    out = np.zeros(len(u_grid))
    norm = 1.0 / (bandwidth * math.sqrt(2 * math.pi))
    step = max(1, CHUNK_ELEMS // max(len(u_grid), 1))
    for e0 in range(0, len(a), step):
        z = (u_grid[None, :] - mu[e0:e0 + step, None]) / bandwidth  # (events, G)
        out += a[e0:e0 + step] @ np.exp(-0.5 * z * z)
    return out * norm / n_tok


def spectrum_histogram(events: Mapping[str, Any], n_tok: int, edges: np.ndarray) -> np.ndarray:
    """Histogram version of rho: (1/N) sum of a_e over events with mu_e in each bin, divided by the
    bin width (so it integrates like the density), (len(edges) - 1,)."""
    a, mu, _ = _event_arrays(events)
    edges = np.asarray(edges, np.float64)
    sums, _ = np.histogram(mu, bins=edges, weights=a)
    return sums / np.diff(edges) / n_tok


def window_drops(events: Mapping[str, Any], u_lo: float, u_hi: float) -> np.ndarray:
    """Per event, the part of its drop that happens inside [u_lo, u_hi]:
    a_e [s((mu_e - u_lo)/w_e) - s((mu_e - u_hi)/w_e)], (E,). A censored event (mu outside the
    window) counts only for its visible tail, however large its fitted a."""
    a, mu, w = _event_arrays(events)
    return a * (logistic((mu - u_lo) / w) - logistic((mu - u_hi) / w))


def _weighted_quantile(v: np.ndarray, wt: np.ndarray, q: np.ndarray) -> np.ndarray:
    order = np.argsort(v)
    cw = np.cumsum(wt[order])
    return np.interp(np.asarray(q) * cw[-1], cw, v[order])


def silverman_bandwidth(events: Mapping[str, Any], fallback: float,
                        weights: np.ndarray | None = None) -> float:
    """Silverman's rule 0.9 min(sd, IQR/1.34) n_eff^-1/5 for the event midpoints, weighted by
    `weights` (default |a|; n_eff is Kish's effective sample size)."""
    _, mu, _ = _event_arrays(events)
    wt = np.abs(np.asarray(events["a"], np.float64) if weights is None else weights)
    if len(mu) < 2 or not wt.sum() > 0:
        return fallback
    m = np.average(mu, weights=wt)
    sd = math.sqrt(np.average((mu - m) ** 2, weights=wt))
    q1, q3 = _weighted_quantile(mu, wt, np.array([0.25, 0.75]))
    spread = min(sd, (q3 - q1) / 1.34) if q3 > q1 else sd
    n_eff = wt.sum() ** 2 / np.sum(wt * wt)
    h = 0.9 * spread * n_eff ** -0.2
    return float(h) if h > 0 else fallback


def density_table(events: Mapping[str, Any], n_tok: int, u: np.ndarray, bandwidth: float | None,
                  n_grid: int) -> tuple[dict, dict]:
    """rho(u) on a uniform grid of n_grid points over the observed window and the events: the
    columns of density.parquet (u, x, rho = rho_learn + rho_rise, rho_window, rho_hist) and the
    numbers behind them (bandwidth, density_mass, mean_event_drop_nats, n_events_censored).

    rho uses the full amplitudes a_e; rho_window each event's drop inside the observed window
    (censored events with a huge fitted a but a small visible tail stay small). bandwidth None:
    Silverman's rule on the midpoints weighted by those window drops."""
    span = float(u[-1] - u[0])
    a = np.asarray(events["a"], np.float64)
    mu = np.asarray(events["mu"], np.float64)
    d = window_drops(events, u[0], u[-1])
    h = bandwidth or silverman_bandwidth(events, fallback=span / 50 or 0.1, weights=np.abs(d))
    lo = max(min(u[0], mu.min() if len(mu) else u[0]) - 3 * h, u[0] - span / 2)
    hi = min(max(u[-1], mu.max() if len(mu) else u[-1]) + 3 * h, u[-1] + span / 2)
    grid = np.linspace(lo, hi, n_grid)
    cols = ("a", "mu", "width")
    pos = {k: np.asarray(events[k])[a > 0] for k in cols}
    neg = {k: np.asarray(events[k])[a < 0] for k in cols}
    rho_learn = spectrum_density(pos, n_tok, grid, h)
    rho_rise = spectrum_density(neg, n_tok, grid, h)
    rho_window = spectrum_density({"a": d, "mu": mu, "width": events["width"]}, n_tok, grid, h)
    dg = grid[1] - grid[0]
    edges = np.concatenate([grid - dg / 2, [grid[-1] + dg / 2]])
    density = {"u": grid, "x": np.exp(grid), "rho": rho_learn + rho_rise,
               "rho_learn": rho_learn, "rho_rise": rho_rise, "rho_window": rho_window,
               "rho_hist": spectrum_histogram(events, n_tok, edges)}
    stats = {"bandwidth": h, "density_mass": float(np.sum(density["rho"]) * dg),
             "mean_event_drop_nats": float(a.sum() / n_tok),
             "n_events_censored": int(np.sum((mu < u[0]) | (mu > u[-1])))}
    return density, stats

def event_share(events: Mapping[str, Any], n_tok: int, u: np.ndarray, L: np.ndarray) -> dict:
    """How much of the measured drop L(u_1) - L(u_K) the events account for.

    event_share: the net drop events make inside the observed window,
      (1/N) sum_e a_e [s((mu_e - u_1)/w_e) - s((mu_e - u_K)/w_e)], divided by L(u_1) - L(u_K)
      (= the integral of the reconstructed -dL/du over the window, over the measured drop);
    event_share_total: (1/N) sum_e a_e (whole sigmoids, including parts outside the window),
      divided by the same measured drop. Signed: rises (a < 0) subtract."""
    a, _, _ = _event_arrays(events)
    ends = np.array([u[0], u[-1]], np.float64)
    levels = _sum_over_events(events, ends, "level") / n_tok
    drop = float(L[0] - L[-1])
    window = float(levels[0] - levels[1])
    total = float(a.sum() / n_tok)
    div = (lambda v: v / drop) if drop != 0 else (lambda v: float("nan"))
    return {"event_share": div(window), "event_share_total": div(total),
            "measured_drop_nats": drop, "event_drop_nats": window}

