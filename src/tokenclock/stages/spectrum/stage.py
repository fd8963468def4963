"""The spectrum stage: events -> rho(u), reconstruction of -dL/du, power-law exponents, for every
fitted clock (the math: stages/spectrum/reconstruct.py and tokenclock.scores).

Reads RUN/trace/{loss.npy, axis.parquet} and RUN/fit[/<axis>]/{events,tokens}.parquet; writes
RUN/spectrum/{curve,density,<axis>_curve,<axis>_density}.parquet and RUN/spectrum/summary.json.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tokenclock.artifacts import json_safe, read_json, read_npy, read_parquet, write_json, write_parquet
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.manifest import load_manifest, stage_config
from tokenclock.rundir import RunDir
from tokenclock.scores import fit_power_law, mean_rel_error, r2_score
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_matrix
from tokenclock.stages.fit.stage import load_axis
from tokenclock.stages.spectrum.config import SpectrumConfig
from tokenclock.stages.spectrum.heldout import block_mask, token_split_scores
from tokenclock.stages.spectrum.reconstruct import (
    CHUNK_ELEMS,
    density_table,
    event_share,
    measured_curve,
    measured_derivative,
    reconstruct_curve,
    reconstruct_derivative,
    reconstruct_derivative_discrete,
)

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
    step = max(cfg.chunk_columns, CHUNK_ELEMS // max(len(rows), 1))
    parts: dict[str, list] = {"tok_idx": [], "a": [], "mu": [], "width": []}
    for c0 in range(0, N, step):
        block = np.asarray(loss_kn[rows, c0:c0 + step], dtype=np.float32)  # (K_even, chunk)
        res = fit_matrix(block, u, fcfg, progress=progress, axis=f"{axis} (held-out)")
        ev = res.events
        parts["tok_idx"].append(np.asarray(ev["tok_idx"], np.int64) + c0)
        for k in ("a", "mu", "width"):
            parts[k].append(np.asarray(ev[k], np.float64))
    return finite_events({k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()})[0]


def _loo_events(loss_kn: np.ndarray, keep: np.ndarray, u: np.ndarray, run: RunDir, axis: str,
                cfg: SpectrumConfig, progress: bool) -> list:
    """Per kept row, the events refitted on the other kept rows (None where that fit fails)."""
    rows = np.flatnonzero(keep)
    out = []
    for k in range(len(rows)):
        others = np.delete(np.arange(len(rows)), k)
        try:
            out.append(_heldout_events(loss_kn, rows[others], u[others], run, axis, cfg, False))
        except DataError:
            out.append(None)
    return out


def finite_events(events: dict) -> tuple[dict, int]:
    """Drop events with non-finite a/mu or non-positive width (a fit that failed for that token)."""
    ok = (np.isfinite(events["a"]) & np.isfinite(events["mu"]) & (events["width"] > 0))
    return {k: np.asarray(v)[ok] for k, v in events.items()}, int((~ok).sum())


def analyze_clock(loss_kn: np.ndarray, u: np.ndarray, keep_mask: np.ndarray | None,
                  events: Mapping[str, Any], tokens_b: np.ndarray, after_mask: np.ndarray,
                  cfg: SpectrumConfig, heldout_events: Mapping[str, Any] | None = None,
                  tokens_c: np.ndarray | None = None, block: tuple | None = None,
                  loo_events: list | None = None) -> tuple:
    """Everything for one clock. u: (K',) kept axis in ln x; after_mask: (K',) post-warmup rows;
    block: (events fitted without the held-out blocks, (K',) mask of the held-out rows);
    loo_events: per kept row, the events fitted without it (spectrum.leave_one_out).
    Scores named *_discrete take the reconstruction's derivative with the measured one's operator
    (reconstruct_derivative_discrete), beside the analytic ones.
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
    rec_d = reconstruct_derivative_discrete(events, N, u, cfg.smoothing)
    s["reconstruction_r2_discrete"] = r2_score(rec_d, meas)
    rec_held, rec_held_d = np.full(len(u), np.nan), np.full(len(u), np.nan)
    if heldout_events is not None:
        rec_held = reconstruct_derivative(heldout_events, N, u)
        rec_held_d = reconstruct_derivative_discrete(heldout_events, N, u, cfg.smoothing)
        s["reconstruction_r2_heldout_discrete"] = r2_score(rec_held_d[odd], meas[odd])
        s["reconstruction_r2_heldout"] = r2_score(rec_held[odd], meas[odd])
        s["reconstruction_r2_heldout_after_warmup"] = r2_score(rec_held[odd & after_mask],
                                                               meas[odd & after_mask])
        s["n_events_heldout_fit"] = int(len(heldout_events["a"]))
    else:
        s["reconstruction_r2_heldout"] = s["reconstruction_r2_heldout_after_warmup"] = float("nan")
    rec_block, block_held = np.full(len(u), np.nan), np.zeros(len(u), bool)
    if block is not None:
        block_events, block_held = block
        rec_block = reconstruct_derivative(block_events, N, u)
        s["reconstruction_r2_block_heldout"] = r2_score(rec_block[block_held], meas[block_held])
        s["reconstruction_r2_block_heldout_after_warmup"] = r2_score(rec_block[block_held & after_mask],
                                                                     meas[block_held & after_mask])
        s["n_ckpt_block_heldout"] = int(block_held.sum())
        s["block_size"] = cfg.block_size
    rec_loo, rec_loo_d = np.full(len(u), np.nan), np.full(len(u), np.nan)
    if loo_events is not None:
        for k, ev in enumerate(loo_events):
            if ev is not None:
                rec_loo[k] = reconstruct_derivative(ev, N, u[k:k + 1])[0]
                rec_loo_d[k] = reconstruct_derivative_discrete(ev, N, u, cfg.smoothing)[k]
        ok = np.isfinite(rec_loo)
        s["reconstruction_r2_loo"] = r2_score(rec_loo[ok], meas[ok]) if ok.sum() >= 3 else float("nan")
        s["reconstruction_r2_loo_discrete"] = r2_score(rec_loo_d[ok], meas[ok]) if ok.sum() >= 3 else float("nan")
        s["n_ckpt_loo"] = int(ok.sum())
    if cfg.token_split:
        keep = np.ones(loss_kn.shape[0], bool) if keep_mask is None else np.asarray(keep_mask, bool)
        s.update(token_split_scores(loss_kn, keep, u, events, after_mask, cfg.smoothing, heldout_events,
                                    odd if heldout_events is not None else None, cfg.chunk_columns))
    s.update(event_share(events, N, u, L))
    # Power laws on the post-warmup part (early training is not a power law), if enough points.
    pl_mask = after_mask if after_mask.sum() >= 3 else np.ones(len(u), bool)
    x = np.exp(u)
    pm = fit_power_law(x[pl_mask], L[pl_mask], cfg.powerlaw_grid)
    ps = fit_power_law(x[pl_mask], rec_L[pl_mask], cfg.powerlaw_grid)
    s.update({"alpha_measured": pm["alpha"], "E": pm["E"], "A": pm["A"], "powerlaw_r2": pm["r2"],
              "alpha_spectrum": ps["alpha"], "E_spectrum": ps["E"], "A_spectrum": ps["A"],
              "powerlaw_spectrum_r2": ps["r2"]})
    density, stats = density_table(events, N, u, cfg.bandwidth, cfg.n_grid)
    s.update(stats)
    curve = {"x": x, "u": u, "loss_mean": L, "dldu_measured": meas, "dldu_reconstructed": rec,
             "loss_reconstructed": rec_L, "dldu_heldout": rec_held,
             "heldout": odd if heldout_events is not None else np.zeros(len(u), bool),
             "dldu_block_heldout": rec_block, "block_heldout": block_held, "after_warmup": after_mask,
             "dldu_reconstructed_discrete": rec_d, "dldu_heldout_discrete": rec_held_d}
    if loo_events is not None:
        curve.update(dldu_loo=rec_loo, dldu_loo_discrete=rec_loo_d)
    return s, curve, density


# ----------------------------------------------------------------------------- the stage


def _clocks(run: RunDir) -> tuple[str, dict[str, str | None]]:
    """{axis: its fit's clock} for every fitted clock, the primary first: None for the primary fit
    in RUN/fit/, the axis itself for RUN/fit/<axis>/."""
    if not run.fit_events.is_file() or not run.fit_summary.is_file():
        raise RunDirError(f"{run.fit_dir} has no fit results", f"run `{run.command('fit')}` first")
    primary = str(read_json(run.fit_summary).get("axis") or "step")
    clocks: dict[str, str | None] = {primary: None}
    for name in run.fit_clocks():
        clocks.setdefault(name, name)
    return primary, clocks


def warmup_end(run: RunDir, cfg: SpectrumConfig) -> int:
    """The first step of the post-warmup scores: spectrum.after_step, else the run's train.warmup_steps."""
    if cfg.after_step is not None:
        return cfg.after_step
    train = load_manifest(run)["stages"].get("train", {}).get("config") or {}
    return int((train.get("train") or {}).get("warmup_steps") or 0)


def spectrum(run_dir: str | Path | RunDir, cfg: SpectrumConfig | None = None, *,
             progress: bool = True) -> dict:
    """Run the spectrum stage on every fitted clock of a run; returns summary.json's contents."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    cfg = cfg or SpectrumConfig()
    primary, clocks = _clocks(run)
    inputs = {"fit": [str(run.fit_clock_dir(c).relative_to(run.root)) for c in clocks.values()]}
    with run.stage("spectrum", dataclasses.asdict(cfg), inputs=inputs) as st:
        summary = _run_clocks(run, cfg, primary, clocks, progress)
        st.record(best_clock=summary["best_clock"])
    return summary


def _run_clocks(run: RunDir, cfg: SpectrumConfig, primary: str, clocks: dict[str, str | None],
                progress: bool) -> dict:
    loss = read_npy(run.trace_loss, mmap=True)                      # (K, N) float32
    axis_table = read_parquet(run.trace_axis)
    after_step = warmup_end(run, cfg) if "step" in axis_table else None
    scores: dict[str, dict] = {}
    for axis, fit_clock in clocks.items():
        u, keep = load_axis(run, axis)
        u, keep = np.asarray(u, np.float64), np.asarray(keep, bool)
        if len(keep) != loss.shape[0] or keep.sum() != len(u):
            raise DataError(f"axis '{axis}' has {len(u)} kept of {len(keep)} rows, loss.npy has "
                            f"{loss.shape[0]} rows", "re-run `tokenclock trace`")
        if after_step is not None:
            after = np.asarray(axis_table["step"])[keep] >= after_step
        else:
            after = np.ones(len(u), bool)
        events, n_bad = finite_events(read_parquet(run.fit_clock_events(fit_clock),
                                                    columns=["tok_idx", "a", "mu", "width"]))
        tok_cols = read_parquet(run.fit_clock_tokens(fit_clock))
        tokens_b, tokens_c = tok_cols["b"], tok_cols.get("c")
        held, block, note = None, None, None
        if cfg.heldout:
            rows = np.flatnonzero(keep)[0::2]
            try:
                held = _heldout_events(loss, rows, u[0::2], run, axis, cfg, progress)
            except DataError as e:  # e.g. too few checkpoints left for the fitter
                note = f"held-out fit skipped: {e}"
        bm = block_mask(len(u), cfg.block_size) if cfg.block_size else None
        if bm is not None and not bm.any():
            note = f"{note + '; ' if note else ''}no held-out block: {len(u)} checkpoints for blocks of {cfg.block_size}"
        elif bm is not None:
            try:
                block = (_heldout_events(loss, np.flatnonzero(keep)[~bm], u[~bm], run, axis, cfg, progress), bm)
            except DataError as e:
                note = f"{note + '; ' if note else ''}block held-out fit skipped: {e}"
        loo = _loo_events(loss, keep, u, run, axis, cfg, progress) if cfg.leave_one_out else None
        s, curve, density = analyze_clock(loss, u, keep, events, tokens_b, after, cfg, held, tokens_c, block, loo)
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
        scores[axis] = json_safe(s)
    return _summary(run, cfg, primary, scores)


def _summary(run: RunDir, cfg: SpectrumConfig, primary: str, clocks: dict[str, dict]) -> dict:
    """summary.json: the primary clock's scores at the top, every clock's under `clocks`, and the
    best clock by the highest post-warmup held-out R^2 (the first score every clock has decides)."""
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
