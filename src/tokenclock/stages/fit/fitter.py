"""The batched fitter: fits every column of a (K, N) loss matrix (an array or a memmap, streamed in
chunks) or of in-memory trajectories, in this process or in parallel worker processes, and
returns a FitResult (per-token and per-event columns plus a summary). Writes no files.

torch and tqdm are imported inside the functions (importing tokenclock stays cheap).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from tokenclock.curves import mu_bounds, spacing_nodes, width_bounds
from tokenclock.errors import ConfigError, DataError
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.models import CLASSES, MODELS, event_slots, fit_block, fitted_models
from tokenclock.stages.fit.resolution import (
    censored,
    censored_summary,
    floor_summary,
    resolution_summary,
    resolved,
)


@dataclass
class FitResult:
    """Per-token and per-event columns (fit/tokens.parquet, fit/events.parquet) plus a summary."""

    tokens: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    summary: dict


# ----------------------------------------------------------------------------- input checks


def _check_axis(u: np.ndarray, n_ckpt: int) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1 or len(u) != n_ckpt:
        raise DataError(f"axis has {u.size} values but the loss matrix has {n_ckpt} checkpoints",
                        "pass one u = ln x per checkpoint")
    if not np.isfinite(u).all():
        raise DataError(f"axis has {int((~np.isfinite(u)).sum())} non-finite values",
                        "drop checkpoints with x <= 0 before taking ln x")
    if len(u) < 4:
        raise DataError(f"only {len(u)} usable checkpoints; a sigmoid fit needs at least 4",
                        "trace more checkpoints (log-spaced, 30-60 is typical)")
    if not (np.diff(u) > 0).all():
        k = int(np.nonzero(np.diff(u) <= 0)[0][0])
        raise DataError(f"axis is not strictly increasing (u[{k}] = {u[k]:.6g} >= "
                        f"u[{k + 1}] = {u[k + 1]:.6g})", "sort checkpoints and drop duplicates")
    return u


def _nonfinite_error(loss_kn, chunk: int, keep: np.ndarray | None = None) -> DataError:
    """Count non-finite losses over the whole (K, N) matrix, chunk by chunk, and name a few."""
    n_bad, where = 0, []
    for i in range(0, loss_kn.shape[1], chunk):
        block = np.asarray(loss_kn[:, i:i + chunk])
        bad = ~np.isfinite(block)
        if keep is not None:
            bad &= keep[:, None]
        n_bad += int(bad.sum())
        if len(where) < 3:
            ks, ns = np.nonzero(bad)
            where += [f"(checkpoint {k}, token {i + n})" for k, n in zip(ks[:3], ns[:3])]
    return DataError(f"loss matrix has {n_bad} NaN/inf values, e.g. at {', '.join(where[:3])}",
                     "re-run `tokenclock trace` for those checkpoints, or drop the bad rows/columns")


# ----------------------------------------------------------------------------- public API


def fit_matrix(loss_kn, u, cfg: FitConfig | None = None, progress: bool = True,
               axis: str | None = None) -> FitResult:
    """Fit every column of a (K, N) loss matrix (array or memmap) along u (K,), streaming
    cfg.chunk_tokens columns at a time so memory stays bounded. tok_idx = column index."""
    import torch
    from tqdm.auto import tqdm

    cfg = cfg or FitConfig()
    if getattr(loss_kn, "ndim", 0) != 2:
        raise DataError(f"loss matrix must be 2-D (K checkpoints, N tokens), got shape "
                        f"{getattr(loss_kn, 'shape', None)}", "pass the trace's loss.npy as (K, N)")
    K, N = loss_kn.shape
    u = _check_axis(u, K)
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = _context(u, cfg)
    cols = ("b", "c", "n_events", "r2", "sse", "class", "model", "bic_gap", "spread",
            *(f"sse_{m}" for m in fitted_models(cfg)[2:]))
    tok = {c: np.empty(N, dtype=np.int8 if c in ("class", "model", "n_events") else np.float64)
           for c in cols}
    evs = {c: np.empty((N, event_slots(cfg)), dtype=np.float64) for c in ("a", "mu", "width", "mu_se")}
    chunk = cfg.chunk_tokens
    starts = list(range(0, N, chunk))

    def blocks():
        for i in starts:
            Y = np.asarray(loss_kn[:, i:i + chunk], dtype=np.float32).T   # (C, K)
            if not np.isfinite(Y).all():
                raise _nonfinite_error(loss_kn, chunk)
            _release_pages(loss_kn)
            yield Y

    workers = _n_workers(cfg, len(starts))
    try:
        with tqdm(total=N, unit="traj", unit_scale=True, disable=not progress,
                  desc=f"fit {axis or cfg.axis}", smoothing=0.1) as bar:
            results = (_fit_parallel(blocks(), u, cfg, workers) if workers > 1
                       else (fit_block(Y, u, cfg, ctx) for Y in blocks()))
            for i, r in zip(starts, results):
                for c in cols:
                    tok[c][i:i + chunk] = r[c]
                for c in evs:
                    evs[c][i:i + chunk] = r[f"ev_{c}"]
                bar.update(len(r["b"]))
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    return _assemble(tok, evs, u, cfg, axis or cfg.axis, seconds)


def _context(u: np.ndarray, cfg: FitConfig) -> dict:
    """What every block along u shares: u_min, u_max, mu_bounds, the width box w_bounds and, for
    the `spacing` rule, the floor's nodes and values (curves.spacing_nodes x w_min_spacing)."""
    ctx = {"u_min": float(u[0]), "u_max": float(u[-1]), "mu_bounds": mu_bounds(u, cfg.mu_margin)}
    w_lo, w_hi = width_bounds(u, cfg.w_min_frac, cfg.w_max_frac)
    if cfg.width_floor == "spacing":
        nodes, gaps = spacing_nodes(u)
        floor = cfg.w_min_spacing * gaps
        if floor.max() >= w_hi:
            raise ConfigError(f"fit.w_min_spacing x the largest checkpoint gap ({floor.max():.4g}) "
                              f"is not below fit.w_max_frac x the span ({w_hi:.4g})",
                              "lower fit.w_min_spacing or raise fit.w_max_frac")
        ctx["floor"] = (nodes, floor)
        w_lo = float(floor.min())
    ctx["w_bounds"] = (w_lo, w_hi)
    return ctx


def _n_workers(cfg: FitConfig, n_chunks: int) -> int:
    if cfg.device != "cpu":
        return 1
    if cfg.workers:
        return min(cfg.workers, n_chunks)
    # a spawned worker costs ~2 s to start (it imports torch): worth it from ~8 chunks on
    return min(os.cpu_count() or 1, n_chunks) if n_chunks >= 8 else 1


_WORKER_CTX: dict = {}


def _worker_block(Y: np.ndarray, u: np.ndarray, cfg: FitConfig) -> dict:
    """One chunk in a worker process (single-threaded torch; grid bases cached per process)."""
    import torch

    torch.set_num_threads(1)
    key = (u.tobytes(), repr(cfg))
    if _WORKER_CTX.get("key") != key:
        _WORKER_CTX.clear()
        _WORKER_CTX.update(key=key, **_context(u, cfg))
    return fit_block(Y, u, cfg, _WORKER_CTX)


def _fit_parallel(blocks, u: np.ndarray, cfg: FitConfig, workers: int):
    """Yield chunk results in order from a pool of spawned processes, at most 2 chunks in flight
    per worker so memory stays bounded."""
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending: deque = deque()
        for Y in blocks:
            pending.append(pool.submit(_worker_block, Y, u, cfg))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def fit_trajectories(Y: np.ndarray, u: np.ndarray, cfg: FitConfig | None = None,
                     progress: bool = False) -> FitResult:
    """Fit in-memory trajectories Y (N, K) along u (K,) (u = ln x, strictly increasing)."""
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise DataError(f"trajectories must be 2-D (N tokens, K checkpoints), got shape {Y.shape}",
                        "stack them as one row per token")
    return fit_matrix(Y.T, u, cfg, progress=progress)


def _release_pages(arr) -> None:
    """Drop the clean file pages a memmap has touched, so RSS stays bounded on huge matrices."""
    mm = getattr(arr, "_mmap", None)
    if mm is None:
        base = getattr(arr, "base", None)
        mm = getattr(base, "_mmap", None) if base is not None else None
    if mm is not None and hasattr(mm, "madvise"):
        import mmap
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError, AttributeError):
            pass


def _assemble(tok: dict, evs: dict, u: np.ndarray, cfg: FitConfig, axis: str,
              seconds: float) -> FitResult:
    N = len(tok["b"])
    n_ev = tok["n_events"].astype(np.int64)
    slots = evs["a"].shape[1]
    slot = np.arange(slots)[None, :] < n_ev[:, None]          # (N, slots)
    tok_idx = np.arange(N, dtype=np.int64)
    events = {"tok_idx": np.broadcast_to(tok_idx[:, None], (N, slots))[slot],
              "a": evs["a"][slot], "mu": evs["mu"][slot], "width": evs["width"][slot]}
    events["resolved"] = resolved(u, events["mu"], events["width"])
    events["censored"] = censored(u, events["mu"], cfg.early_margin, cfg.late_margin)
    if cfg.uncertainty:
        events["mu_se"] = evs["mu_se"][slot]
    classes = np.array(CLASSES, dtype=object)
    models = np.array(MODELS, dtype=object)
    tokens = {"tok_idx": tok_idx, "b": tok["b"], "c": tok["c"], "n_events": n_ev, "r2": tok["r2"],
              "sse": tok["sse"], "class": classes[tok["class"]], "model": models[tok["model"]],
              "bic_gap": tok["bic_gap"], "sse_sigmoid1": tok["sse_sigmoid1"],
              "sse_sigmoid2": tok["sse_sigmoid2"], "spread": tok["spread"]}
    if "sse_sigmoid3" in tok:
        tokens["sse_sigmoid3"] = tok["sse_sigmoid3"]
    models_fitted = fitted_models(cfg)
    counts = np.bincount(tok["class"], minlength=len(CLASSES))
    mcounts = np.bincount(tok["model"], minlength=len(MODELS))
    summary = {
        "n_tok": int(N), "n_ckpt": int(len(u)), "axis": axis,
        "u_min": float(u[0]), "u_max": float(u[-1]),
        "class_share": {c: float(counts[i] / max(N, 1)) for i, c in enumerate(CLASSES)},
        "model_share": {m: float(mcounts[i] / max(N, 1)) for i, m in enumerate(models_fitted)},
        "median_r2": float(np.nanmedian(tok["r2"])) if N else float("nan"),
        "sigmoid_share": float((tok["model"] >= 2).mean()) if N else 0.0,
        "events_per_token": float(n_ev.mean()) if N else 0.0,
        "n_events": int(n_ev.sum()),
        "total_drop_nats_mean": float(np.nansum(events["a"]) / max(N, 1)),
        "max_events": cfg.max_events,
        "rule": cfg.rule, "penalty": cfg.penalty,
        "width_floor": floor_summary(u, events["mu"], events["width"], cfg.width_floor,
                                     cfg.w_min_spacing, cfg.w_min_frac),
        "resolution": resolution_summary(u, events["a"], events["mu"], events["width"],
                                         cfg.resolution_bins),
        "censored": censored_summary(events["a"], events["censored"]),
        "loss_floor": cfg.loss_floor,
        "seconds": round(seconds, 3),
        "trajectories_per_s": float(N / seconds) if seconds > 0 else None,
        "config": asdict(cfg),
    }
    return FitResult(tokens=tokens, events=events, summary=summary)

