"""Pure math behind the report's numbers (numpy only, no files): a token's fitted loss curve,
Spearman's rank correlation, R², the mean loss per checkpoint, each token's largest learning event and
the power law E + A x^-alpha of the mean loss."""
from __future__ import annotations

import math

import numpy as np


def _logistic(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def fitted_curve(u: np.ndarray, b: float, a: np.ndarray, mu: np.ndarray, w: np.ndarray,
                 c: float = 0.0, u_end: float | None = None) -> np.ndarray:
    """l(u) = b + sum_j a_j * s((mu_j - u) / w_j)  (DESIGN.md); a token whose best model is
    linear in ln x has c != 0: l(u) = b + c (u - u_end)."""
    u = np.asarray(u, dtype=np.float64)
    lin = c * (u - (u[-1] if u_end is None else u_end)) if c else 0.0
    return b + lin + (np.asarray(a) * _logistic((np.asarray(mu) - u[:, None]) / np.asarray(w))).sum(axis=1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as Spearman needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    return sums[inv] / counts[inv]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = _ranks(np.asarray(x, float)), _ranks(np.asarray(y, float))
    if len(rx) < 3 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    ok = np.isfinite(measured) & np.isfinite(predicted)
    m, p = measured[ok], predicted[ok]
    ss = ((m - m.mean()) ** 2).sum() if len(m) else 0.0
    return float(1.0 - ((m - p) ** 2).sum() / ss) if ss > 0 else float("nan")


def _mean_loss_per_ckpt(loss: np.ndarray) -> np.ndarray:
    """(K,) mean over tokens, one contiguous row at a time (never the whole matrix in memory)."""
    return np.array([float(np.nanmean(np.asarray(loss[k], dtype=np.float64)))
                     for k in range(loss.shape[0])])


def _largest_positive_event(events: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(tok_idx, mu) of each token's largest learning (a > 0) event."""
    pos = events["a"] > 0
    tok, a, mu = events["tok_idx"][pos], events["a"][pos], events["mu"][pos]
    order = np.lexsort((a, tok))
    tok, mu = tok[order], mu[order]
    last = np.r_[tok[1:] != tok[:-1], True] if len(tok) else np.zeros(0, bool)
    return tok[last], mu[last]


def _power_law(summary: dict, alpha_key: str, x: np.ndarray, y: np.ndarray):
    """(E, A, alpha) for L = E + A x^-alpha: E and A from the summary when it has them, else
    least squares of the traced mean loss for that alpha (linear in E, A)."""
    alpha = summary.get(alpha_key)
    if not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        return None
    pl = summary.get("power_law" if alpha_key == "alpha_measured" else "power_law_spectrum")
    if isinstance(pl, dict) and all(isinstance(pl.get(k), (int, float)) and math.isfinite(pl[k])
                                    for k in ("E", "A")):
        return float(pl["E"]), float(pl["A"]), float(alpha), "spectrum/summary.json"
    ok = (x > 0) & np.isfinite(y)
    if ok.sum() < 3:
        return None
    design = np.stack([np.ones(ok.sum()), x[ok] ** -alpha], axis=1)
    (e, a), *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    return float(e), float(a), float(alpha), "least squares here"
