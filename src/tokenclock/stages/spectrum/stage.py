"""The learning-time spectrum: events -> rho(u), reconstruction of -dL/du, power-law exponents.

Reads RUN/trace/{loss.npy, axis.parquet} and RUN/fit[/<axis>]/{events,tokens}.parquet; writes
RUN/spectrum/{curve,density,<axis>_curve,<axis>_density}.parquet and RUN/spectrum/summary.json.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tokenclock.curves import logistic
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.rundir import RunDir, load_manifest, run_lock, stage_config, update_stage
from tokenclock.artifacts import read_json, read_npy, read_parquet, write_json, write_parquet
from tokenclock.stages.fit.stage import FitConfig, fit_matrix, load_axis

_CHUNK_ELEMS = 1 << 22  # float64 elements per (events x grid) or (ckpt x columns) block: 32 MiB


@dataclass
class SpectrumConfig:
    """How the spectrum stage measures, reconstructs and scores."""

    smoothing: int = 2
    """Half-window, in checkpoints, of the local quadratic whose slope is the measured -dL/du
    (a Savitzky-Golay derivative on the non-uniform u grid); 0 = plain central differences."""
    bandwidth: float | None = None
    """Std of the Gaussian kernel for rho(u), in units of u = ln x; None = Silverman's rule on the
    event midpoints weighted by |a|."""
    n_grid: int = 200
    """Points of the uniform u grid on which rho(u) is written (density.parquet)."""
    heldout: bool = True
    """Refit events on every other kept checkpoint and score the reconstruction on the rest."""
    after_step: int | None = None
    """Post-warmup scores use checkpoints with step >= after_step; None = the run's
    train.warmup_steps from the manifest (0 if absent). Ignored when the axis table has no step."""
    powerlaw_grid: int = 200
    """Grid points over E in [0, min L) per refinement round of the power-law fit."""
    chunk_columns: int = 65536
    """Token columns read at once from the (memory-mapped) loss matrix."""

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ConfigError(f"spectrum.smoothing must be >= 0, got {self.smoothing}",
                              "use 0 for plain finite differences, 2 for a 5-point quadratic")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ConfigError(f"spectrum.bandwidth must be > 0 or null, got {self.bandwidth}",
                              "a kernel std in ln-axis units, e.g. 0.1; null picks one")
        if self.n_grid < 10:
            raise ConfigError(f"spectrum.n_grid must be >= 10, got {self.n_grid}")
        if self.after_step is not None and self.after_step < 0:
            raise ConfigError(f"spectrum.after_step must be >= 0 or null, got {self.after_step}")
        if self.powerlaw_grid < 10:
            raise ConfigError(f"spectrum.powerlaw_grid must be >= 10, got {self.powerlaw_grid}")
        if self.chunk_columns < 1:
            raise ConfigError(f"spectrum.chunk_columns must be >= 1, got {self.chunk_columns}")


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
    step = chunk_columns or max(1, _CHUNK_ELEMS // max(len(rows), 1))
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
        raise DataError("the axis is not strictly increasing", "check trace/axis.parquet")
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


def _sigmoid_prime(z: np.ndarray) -> np.ndarray:
    """s'(z) = s(z) (1 - s(z)), written with exp(-|z|) so it neither overflows nor cancels."""
    e = np.exp(-np.abs(z))
    return e / (1.0 + e) ** 2


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
    step = max(1, _CHUNK_ELEMS // max(len(u), 1))
    for e0 in range(0, len(a), step):
        sl = slice(e0, e0 + step)
        z = (mu[sl, None] - u[None, :]) / w[sl, None]              # (events, K)
        if kind == "rate":
            out += (a[sl] / w[sl]) @ _sigmoid_prime(z)
        else:
            out += a[sl] @ logistic(z)
    return out


def reconstruct_derivative(events: Mapping[str, Any], n_tok: int, u: np.ndarray) -> np.ndarray:
    """-dL/du = (1/N) sum_e (a_e / w_e) s'((mu_e - u) / w_e), at each u, (K,)."""
    return _sum_over_events(events, u, "rate") / n_tok


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
    step = max(1, _CHUNK_ELEMS // max(len(u_grid), 1))
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


# ----------------------------------------------------------------------------- scores


def r2_score(pred: np.ndarray, meas: np.ndarray) -> float:
    """1 - SSE / SST of pred against meas (NaN with fewer than 2 points or a constant meas)."""
    pred, meas = np.asarray(pred, np.float64), np.asarray(meas, np.float64)
    if len(meas) < 2:
        return float("nan")
    sst = float(np.sum((meas - meas.mean()) ** 2))
    return 1.0 - float(np.sum((pred - meas) ** 2)) / sst if sst > 0 else float("nan")


def mean_rel_error(pred: np.ndarray, meas: np.ndarray) -> float:
    """sum |pred - meas| / sum |meas|: mean absolute error relative to the mean measured size
    (pointwise ratios blow up where -dL/du crosses zero, e.g. in the unigram dip)."""
    pred, meas = np.asarray(pred, np.float64), np.asarray(meas, np.float64)
    den = float(np.sum(np.abs(meas)))
    return float(np.sum(np.abs(pred - meas))) / den if den > 0 else float("nan")


def fit_power_law(x: np.ndarray, L: np.ndarray, n_grid: int = 200, rounds: int = 4) -> dict:
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


# ----------------------------------------------------------------------------- one clock


def _odd_mask(n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    m[1::2] = True
    return m


def _heldout_events(loss_kn: np.ndarray, rows: np.ndarray, u: np.ndarray, run: RunDir, axis: str,
                    cfg: SpectrumConfig, progress: bool) -> dict:
    """Fit events on the given rows only, column block by column block (tok_idx is global)."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    saved = {k: v for k, v in (stage_config(run, "fit") or {}).items() if k in names}
    saved.update({k: v for k, v in (("axis", axis), ("extra_axes", [])) if k in names})
    try:
        fcfg = FitConfig(**saved)
    except (ConfigError, TypeError, ValueError):
        fcfg = FitConfig(**{k: v for k, v in (("axis", axis), ("extra_axes", [])) if k in names})
    N = loss_kn.shape[1]
    step = max(cfg.chunk_columns, _CHUNK_ELEMS // max(len(rows), 1))
    parts: dict[str, list] = {"tok_idx": [], "a": [], "mu": [], "width": []}
    for c0 in range(0, N, step):
        block = np.asarray(loss_kn[rows, c0:c0 + step], dtype=np.float32)  # (K_even, chunk)
        res = fit_matrix(block, u, fcfg, progress=progress, axis=f"{axis} (held-out)")
        ev = res.events
        parts["tok_idx"].append(np.asarray(ev["tok_idx"], np.int64) + c0)
        for k in ("a", "mu", "width"):
            parts[k].append(np.asarray(ev[k], np.float64))
    return _finite_events({k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()})[0]


def _finite_events(events: dict) -> tuple[dict, int]:
    """Drop events with non-finite a/mu or non-positive width (a fit that failed for that token)."""
    ok = (np.isfinite(events["a"]) & np.isfinite(events["mu"]) & (events["width"] > 0))
    return {k: np.asarray(v)[ok] for k, v in events.items()}, int((~ok).sum())


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become null (json.dumps would write the invalid token NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def analyze_clock(loss_kn: np.ndarray, u: np.ndarray, keep_mask: np.ndarray | None,
                  events: Mapping[str, Any], tokens_b: np.ndarray, after_mask: np.ndarray,
                  cfg: SpectrumConfig, heldout_events: Mapping[str, Any] | None = None,
                  tokens_c: np.ndarray | None = None) -> tuple:
    """Everything for one clock. u: (K',) kept axis in ln x; after_mask: (K',) post-warmup rows.
    Returns (scores dict, curve columns, density columns)."""
    N = loss_kn.shape[1]
    u = np.asarray(u, np.float64)
    L = measured_curve(loss_kn, keep_mask, cfg.chunk_columns)
    meas = measured_derivative(L, u, cfg.smoothing)
    rec = reconstruct_derivative(events, N, u)
    rec_L = reconstruct_curve(tokens_b, events, N, u, tokens_c)
    odd = _odd_mask(len(u))
    after_mask = np.asarray(after_mask, bool)
    s: dict[str, Any] = {
        "n_tok": int(N), "n_ckpt": int(len(u)), "n_events": int(len(events["a"])),
        "n_events_learn": int(np.sum(np.asarray(events["a"]) > 0)),
        "n_events_rise": int(np.sum(np.asarray(events["a"]) < 0)),
        "reconstruction_r2": r2_score(rec, meas),
        "reconstruction_r2_after_warmup": r2_score(rec[after_mask], meas[after_mask]),
        "mean_rel_error": mean_rel_error(rec, meas),
        "mean_rel_error_after_warmup": mean_rel_error(rec[after_mask], meas[after_mask]),
        "loss_r2": r2_score(rec_L, L),
        "n_ckpt_after_warmup": int(after_mask.sum()),
    }
    rec_held = np.full(len(u), np.nan)
    if heldout_events is not None:
        rec_held = reconstruct_derivative(heldout_events, N, u)
        s["reconstruction_r2_heldout"] = r2_score(rec_held[odd], meas[odd])
        s["reconstruction_r2_heldout_after_warmup"] = r2_score(rec_held[odd & after_mask],
                                                               meas[odd & after_mask])
        s["n_events_heldout_fit"] = int(len(heldout_events["a"]))
    else:
        s["reconstruction_r2_heldout"] = s["reconstruction_r2_heldout_after_warmup"] = float("nan")
    s.update(event_share(events, N, u, L))
    # Power laws on the post-warmup part (early training is not a power law), if enough points.
    pl_mask = after_mask if after_mask.sum() >= 3 else np.ones(len(u), bool)
    x = np.exp(u)
    pm = fit_power_law(x[pl_mask], L[pl_mask], cfg.powerlaw_grid)
    ps = fit_power_law(x[pl_mask], rec_L[pl_mask], cfg.powerlaw_grid)
    s.update({"alpha_measured": pm["alpha"], "E": pm["E"], "A": pm["A"], "powerlaw_r2": pm["r2"],
              "alpha_spectrum": ps["alpha"], "E_spectrum": ps["E"], "A_spectrum": ps["A"],
              "powerlaw_spectrum_r2": ps["r2"]})
    # Density: rho as defined (full amplitudes a_e) and rho_window (each event's drop inside the
    # observed window: censored events with huge fitted a but a small visible tail stay small).
    span = float(u[-1] - u[0])
    a = np.asarray(events["a"], np.float64)
    mu = np.asarray(events["mu"], np.float64)
    d = window_drops(events, u[0], u[-1])
    h = cfg.bandwidth or silverman_bandwidth(events, fallback=span / 50 or 0.1, weights=np.abs(d))
    lo = max(min(u[0], mu.min() if len(mu) else u[0]) - 3 * h, u[0] - span / 2)
    hi = min(max(u[-1], mu.max() if len(mu) else u[-1]) + 3 * h, u[-1] + span / 2)
    grid = np.linspace(lo, hi, cfg.n_grid)
    cols = ("a", "mu", "width")
    pos = {k: np.asarray(events[k])[a > 0] for k in cols}
    neg = {k: np.asarray(events[k])[a < 0] for k in cols}
    rho_learn = spectrum_density(pos, N, grid, h)
    rho_rise = spectrum_density(neg, N, grid, h)
    rho_window = spectrum_density({"a": d, "mu": mu, "width": events["width"]}, N, grid, h)
    dg = grid[1] - grid[0]
    edges = np.concatenate([grid - dg / 2, [grid[-1] + dg / 2]])
    density = {"u": grid, "x": np.exp(grid), "rho": rho_learn + rho_rise,
               "rho_learn": rho_learn, "rho_rise": rho_rise, "rho_window": rho_window,
               "rho_hist": spectrum_histogram(events, N, edges)}
    s.update({"bandwidth": h, "density_mass": float(np.sum(density["rho"]) * dg),
              "mean_event_drop_nats": float(a.sum() / N),
              "n_events_censored": int(np.sum((mu < u[0]) | (mu > u[-1])))})
    curve = {"x": x, "u": u, "loss_mean": L, "dldu_measured": meas, "dldu_reconstructed": rec,
             "loss_reconstructed": rec_L, "dldu_heldout": rec_held,
             "heldout": odd if heldout_events is not None else np.zeros(len(u), bool),
             "after_warmup": after_mask}
    return s, curve, density


# ----------------------------------------------------------------------------- the stage


def _clock_dirs(run: RunDir) -> tuple[str, dict[str, Path]]:
    """{axis: folder with events.parquet}: the primary fit first, then RUN/fit/<axis>/ folders."""
    if not run.fit_events.is_file() or not run.fit_summary.is_file():
        raise RunDirError(f"{run.fit_dir} has no fit results", f"run `tokenclock fit {run.root}` first")
    primary = str(read_json(run.fit_summary).get("axis") or "step")
    dirs = {primary: run.fit_dir}
    for p in sorted(run.fit_dir.iterdir()):
        if p.is_dir() and (p / run.fit_events.name).is_file() and p.name not in dirs:
            dirs[p.name] = p
    return primary, dirs


def _after_step(run: RunDir, cfg: SpectrumConfig) -> int:
    if cfg.after_step is not None:
        return cfg.after_step
    train = load_manifest(run)["stages"].get("train", {}).get("config") or {}
    return int((train.get("train") or {}).get("warmup_steps") or 0)


def spectrum(run_dir: str | Path | RunDir, cfg: SpectrumConfig | None = None, *,
             progress: bool = True) -> dict:
    """Run the spectrum stage on every fitted clock of a run; returns summary.json's contents."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    cfg = cfg or SpectrumConfig()
    primary, dirs = _clock_dirs(run)
    t0 = time.time()
    with run_lock(run, "spectrum"):
        update_stage(run, "spectrum", "running", config=dataclasses.asdict(cfg),
                     inputs={"fit": [str(d.relative_to(run.root)) for d in dirs.values()]})
        try:
            summary = _run_clocks(run, cfg, primary, dirs, load_axis, progress)
        except BaseException:
            update_stage(run, "spectrum", "failed")
            raise
        update_stage(run, "spectrum", "done", seconds=time.time() - t0,
                     best_clock=summary["best_clock"])
    return summary


def _run_clocks(run: RunDir, cfg: SpectrumConfig, primary: str, dirs: dict[str, Path],
                load_axis: Any, progress: bool) -> dict:
    loss = read_npy(run.trace_loss, mmap=True)                      # (K, N) float32
    axis_table = read_parquet(run.trace_axis)
    after_step = _after_step(run, cfg) if "step" in axis_table else None
    clocks: dict[str, dict] = {}
    for axis, folder in dirs.items():
        u, keep = load_axis(run, axis)
        u, keep = np.asarray(u, np.float64), np.asarray(keep, bool)
        if len(keep) != loss.shape[0] or keep.sum() != len(u):
            raise DataError(f"axis '{axis}' has {len(u)} kept of {len(keep)} rows, loss.npy has "
                            f"{loss.shape[0]} rows", "re-run `tokenclock trace`")
        if after_step is not None:
            after = np.asarray(axis_table["step"])[keep] >= after_step
        else:
            after = np.ones(len(u), bool)
        events, n_bad = _finite_events(
            read_parquet(folder / run.fit_events.name, columns=["tok_idx", "a", "mu", "width"]))
        tok_cols = read_parquet(folder / run.fit_tokens.name)
        tokens_b, tokens_c = tok_cols["b"], tok_cols.get("c")
        held, note = None, None
        if cfg.heldout:
            rows = np.flatnonzero(keep)[0::2]
            try:
                held = _heldout_events(loss, rows, u[0::2], run, axis, cfg, progress)
            except DataError as e:  # e.g. too few checkpoints left for the fitter
                note = f"held-out fit skipped: {e}"
        s, curve, density = analyze_clock(loss, u, keep, events, tokens_b, after, cfg, held, tokens_c)
        s.update({"axis": axis, "after_step": after_step, "n_events_nonfinite_dropped": n_bad})
        if note:
            s["heldout_note"] = note
        if "step" in axis_table:
            curve["step"] = np.asarray(axis_table["step"])[keep]
        clock = None if axis == primary else axis
        meta = {"axis": axis, "dldu": "columns dldu_* hold -dL/du (positive while loss falls)",
                "heldout": "True = not used in the held-out fit"}
        write_parquet(run.spectrum_curve(clock), curve, metadata=meta)
        write_parquet(run.spectrum_density(clock), density,
                      metadata={"axis": axis, "bandwidth": s["bandwidth"], "n_tok": s["n_tok"]})
        s["power_law"] = {"E": s["E"], "A": s["A"], "alpha": s["alpha_measured"], "r2": s["powerlaw_r2"]}
        s["power_law_spectrum"] = {"E": s["E_spectrum"], "A": s["A_spectrum"],
                                   "alpha": s["alpha_spectrum"], "r2": s["powerlaw_spectrum_r2"]}
        clocks[axis] = _clean(s)

    # Best clock: highest post-warmup held-out R^2; the first score every clock has decides.
    for key in ("reconstruction_r2_heldout_after_warmup", "reconstruction_r2_heldout",
                "reconstruction_r2_after_warmup", "reconstruction_r2"):
        if all(c.get(key) is not None for c in clocks.values()):
            break
    best = max(clocks, key=lambda a: -math.inf if clocks[a].get(key) is None else clocks[a][key])
    summary = dict(clocks[primary])
    summary.update({"primary_clock": primary, "clocks": clocks, "best_clock": best,
                    "best_clock_by": key, "config": dataclasses.asdict(cfg)})
    write_json(run.spectrum_summary, summary)
    return summary
