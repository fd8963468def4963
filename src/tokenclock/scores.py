"""How well one curve matches another, and the power law of a curve: R², mean relative error,
Spearman's rank correlation and L = E + A x^-alpha (numpy only, no files). Used by the spectrum
stage and the report.

One rule for missing values: a pair where the prediction or the measurement is NaN/inf is left
out, and a score that cannot be computed (fewer than 2 pairs, a constant measurement) is NaN.
"""
from __future__ import annotations

import numpy as np


def _finite_pairs(pred, meas) -> tuple[np.ndarray, np.ndarray]:
    pred, meas = np.asarray(pred, np.float64), np.asarray(meas, np.float64)
    ok = np.isfinite(pred) & np.isfinite(meas)
    return (pred, meas) if ok.all() else (pred[ok], meas[ok])


def r2_score(pred, meas) -> float:
    """1 - SSE / SST of pred against meas, over the finite pairs (NaN with fewer than 2 of them or
    a constant meas)."""
    pred, meas = _finite_pairs(pred, meas)
    if len(meas) < 2:
        return float("nan")
    sst = float(np.sum((meas - meas.mean()) ** 2))
    return 1.0 - float(np.sum((pred - meas) ** 2)) / sst if sst > 0 else float("nan")


def replicate_r2(curves) -> float:
    """The replicate ceiling: the mean R^2 of each replicate's measured curve predicting another's,
    over every ordered pair (both ways for two runs); pairs whose R^2 is not finite are left out
    (NaN when none is). What a reconstruction of one replicate can be expected to explain."""
    curves = list(curves)
    pairs = [r2_score(a, b) for i, a in enumerate(curves) for j, b in enumerate(curves) if i != j]
    finite = [p for p in pairs if np.isfinite(p)]
    return float(np.mean(finite)) if finite else float("nan")


def mean_rel_error(pred, meas) -> float:
    """sum |pred - meas| / sum |meas| over the finite pairs: mean absolute error relative to the mean
    measured size (pointwise ratios blow up where -dL/du crosses zero, e.g. in the unigram dip)."""
    pred, meas = _finite_pairs(pred, meas)
    den = float(np.sum(np.abs(meas)))
    return float(np.sum(np.abs(pred - meas))) / den if den > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman(x, y) -> float:
    """Spearman's rank correlation of x and y (NaN with fewer than 3 points or a constant one)."""
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if len(rx) < 3 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def fit_power_law(x, L, n_grid: int = 200, rounds: int = 4) -> dict:
    """Fit L = E + A x^-alpha. For each E on a grid over [0, min L), ln(L - E) is regressed on ln x
    (closed form, all E at once); the E with the least squared error in L wins, and the grid is
    refined around it `rounds` times. Returns {E, A, alpha, r2}."""
    x, L = np.asarray(x, np.float64), np.asarray(L, np.float64)
    nan = {"E": float("nan"), "A": float("nan"), "alpha": float("nan"), "r2": float("nan")}
    ok = np.isfinite(L) & (x > 0)
    x, L = x[ok], L[ok]
    if len(x) < 3 or np.ptp(np.log(x)) == 0:
        return nan
    lx = np.log(x)
    lmin = float(L.min())
    lo = 0.0 if lmin > 0 else lmin - max(np.ptp(L), 1.0)
    hi = lmin - 1e-9 * max(abs(lmin), 1.0)
    best = None
    for _ in range(rounds):
        E = np.linspace(lo, hi, n_grid)                              # (G,)
        y = np.log(np.maximum(L[None, :] - E[:, None], 1e-300))       # (G, K)
        xm = lx - lx.mean()
        slope = (y - y.mean(1, keepdims=True)) @ xm / (xm @ xm)       # (G,)
        icpt = y.mean(1) - slope * lx.mean()
        pred = E[:, None] + np.exp(icpt[:, None] + slope[:, None] * lx[None, :])
        sse = np.sum((pred - L[None, :]) ** 2, axis=1)
        sse[~np.isfinite(sse)] = np.inf
        j = int(np.argmin(sse))
        if best is None or sse[j] <= best[0]:
            best = (float(sse[j]), float(E[j]), float(np.exp(icpt[j])), float(-slope[j]))
        step = (hi - lo) / (n_grid - 1)
        lo, hi = max(lo, E[j] - step), min(hi, E[j] + step)
    _, E_, A_, alpha = best
    return {"E": E_, "A": A_, "alpha": alpha,
            "r2": r2_score(E_ + A_ * x ** -alpha, L)}


def power_law_coefficients(x, L, alpha: float) -> tuple[float, float] | None:
    """(E, A) of L = E + A x^-alpha for a given alpha: least squares, linear in E and A, over the
    points with x > 0 and a finite L (None with fewer than 3 of them)."""
    x, L = np.asarray(x, np.float64), np.asarray(L, np.float64)
    ok = (x > 0) & np.isfinite(L)
    if ok.sum() < 3:
        return None
    design = np.stack([np.ones(ok.sum()), x[ok] ** -alpha], axis=1)
    (e, a), *_ = np.linalg.lstsq(design, L[ok], rcond=None)
    return float(e), float(a)
