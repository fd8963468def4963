"""The classical baseline: a joint scaling law L(N, D) = E + A N^-alpha + B D^-beta fitted to the
final losses of a study's runs (Chinchilla approach 3), with bootstrap intervals over runs.

Pure math on arrays; `study` writes the result to STUDY_DIR/chinchilla.json.
Fit: minimize sum_i Huber_delta(LSE(a - alpha ln N_i, b - beta ln D_i, e) - ln L_i) over
(a, b, e, alpha, beta) with A = e^a, B = e^b, E = e^e, by L-BFGS-B from the best points of a grid
of initial values evaluated at once in numpy. scipy (a dependency) is imported inside _minimize, for
start-up time.
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.errors import DataError, InputError

PARAMS = ("a", "b", "e", "alpha", "beta")
_BOUNDS = [(-10.0, 40.0), (-10.0, 40.0), (-10.0, 10.0), (1e-3, 5.0), (1e-3, 5.0)]


def _objective(p: np.ndarray, lnN: np.ndarray, lnD: np.ndarray, lnL: np.ndarray, delta: float):
    """Huber loss of the log-space residuals and its gradient; p = (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = p
    terms = np.stack([a - alpha * lnN, b - beta * lnD, np.full_like(lnN, e)])  # (3, n)
    m = terms.max(0)
    w = np.exp(terms - m)
    s = w.sum(0)
    r = m + np.log(s) - lnL
    w = w / s                                                                  # softmax weights
    absr = np.abs(r)
    loss = np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta)).sum()
    g = np.clip(r, -delta, delta)
    grad = np.array([(g * w[0]).sum(), (g * w[1]).sum(), (g * w[2]).sum(),
                     -(g * w[0] * lnN).sum(), -(g * w[1] * lnD).sum()])
    return float(loss), grad


def _grid_losses(grid: np.ndarray, lnN, lnD, lnL, delta: float) -> np.ndarray:
    """Objective at every grid row (G, 5) at once."""
    a, b, e, alpha, beta = (grid[:, i:i + 1] for i in range(5))
    t = np.stack([a - alpha * lnN[None], b - beta * lnD[None], np.broadcast_to(e, (len(grid), len(lnN)))])
    r = np.logaddexp.reduce(t, axis=0) - lnL[None]
    absr = np.abs(r)
    return np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta)).sum(1)


def initial_grid() -> np.ndarray:
    """Chinchilla's grid of starting points (a, b, e, alpha, beta), a little coarser."""
    axes = [np.linspace(0, 25, 6), np.linspace(0, 25, 6), np.linspace(-1, 1.5, 6),
            np.linspace(0.0, 2.0, 9), np.linspace(0.0, 2.0, 9)]
    g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 5)
    g[:, 3:] = np.maximum(g[:, 3:], _BOUNDS[3][0])
    return g


def _minimize(p0: np.ndarray, lnN, lnD, lnL, delta: float):
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise InputError("the Chinchilla fit needs scipy", "pip install scipy") from None
    res = minimize(_objective, p0, args=(lnN, lnD, lnL, delta), jac=True, method="L-BFGS-B",
                   bounds=_BOUNDS, options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-12})
    return res.x, float(res.fun)


def _fit_once(lnN, lnD, lnL, delta: float, starts: np.ndarray, n_starts: int):
    losses = _grid_losses(starts, lnN, lnD, lnL, delta)
    order = np.argsort(losses)[:n_starts]
    best = None
    for i in order:
        x, f = _minimize(starts[i], lnN, lnD, lnL, delta)
        if best is None or f < best[1]:
            best = (x, f)
    return best


def _named(p: np.ndarray) -> dict:
    a, b, e, alpha, beta = (float(v) for v in p)
    return {"E": math.exp(e), "A": math.exp(a), "alpha": alpha, "B": math.exp(b), "beta": beta}


def fit_chinchilla(n_params, tokens, loss, *, delta: float = 1e-3, n_starts: int = 8,
                   n_boot: int = 100, seed: int = 0) -> dict:
    """Fit L = E + A N^-alpha + B D^-beta to one final loss per run; bootstrap over runs.

    Returns {"E","A","alpha","B","beta", "huber_loss", "r2_log", "n_runs", "at_bound" (names of
    the parameters (a, b, e, alpha, beta) pinned at a bound: not determined by the data),
    "bootstrap": {param: [2.5%, 50%, 97.5%]}, "n_boot_ok", "delta"}."""
    N, D, L = (np.asarray(v, np.float64).reshape(-1) for v in (n_params, tokens, loss))
    if not (len(N) == len(D) == len(L)):
        raise DataError(f"Chinchilla fit: {len(N)} n_params, {len(D)} tokens, {len(L)} losses")
    ok = np.isfinite(N) & np.isfinite(D) & np.isfinite(L) & (N > 0) & (D > 0) & (L > 0)
    N, D, L = N[ok], D[ok], L[ok]
    if len(L) < 5 or len(np.unique(N)) < 2 or len(np.unique(D)) < 2:
        raise DataError(f"a Chinchilla fit needs at least 5 finished runs over >= 2 model sizes and "
                        f">= 2 token budgets; got {len(L)} runs", "add models or budgets to the study")
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)
    grid = initial_grid()
    x, f = _fit_once(lnN, lnD, lnL, delta, grid, n_starts)
    pred = np.logaddexp.reduce(np.stack([x[0] - x[3] * lnN, x[1] - x[4] * lnD,
                                         np.full_like(lnN, x[2])]), axis=0)
    sst = float(np.sum((lnL - lnL.mean()) ** 2))
    out = _named(x) | {"huber_loss": f, "delta": delta, "n_runs": int(len(L)),
                       "r2_log": 1 - float(np.sum((pred - lnL) ** 2)) / sst if sst > 0 else float("nan")}
    # a parameter pinned at its bound means the data do not determine it (e.g. E -> 0 when the
    # losses are far above any floor, or alpha -> 5 when bigger models do not help)
    out["at_bound"] = [PARAMS[i] for i, (lo, hi) in enumerate(_BOUNDS)
                       if min(abs(x[i] - lo), abs(x[i] - hi)) < 1e-6 * max(1.0, abs(x[i]))]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(L), len(L))
        if len(np.unique(N[idx])) < 2 or len(np.unique(D[idx])) < 2:
            continue
        # restart from the full-data optimum plus the best few grid points of this resample
        starts = np.vstack([x[None], grid])
        xb, _ = _fit_once(lnN[idx], lnD[idx], lnL[idx], delta, starts, 2)
        boots.append(xb)
    out["n_boot_ok"] = len(boots)
    if boots:
        named = [_named(b) for b in boots]
        out["bootstrap"] = {k: [float(np.percentile([n[k] for n in named], q)) for q in (2.5, 50, 97.5)]
                            for k in ("E", "A", "alpha", "B", "beta")}
    else:
        out["bootstrap"] = {}
    return out


def predict(fit: dict, n_params, tokens) -> np.ndarray:
    N, D = np.asarray(n_params, np.float64), np.asarray(tokens, np.float64)
    return fit["E"] + fit["A"] * N ** -fit["alpha"] + fit["B"] * D ** -fit["beta"]
