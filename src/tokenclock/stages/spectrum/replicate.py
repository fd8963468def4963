"""The replicate ceiling (`tokenclock spectrum RUN --replicate RUN2`): how much of the measured
-dL/du replicates across two runs that differ only in data order (train.data_seed), beside how much
of it each run's events reconstruct, and how well one run's events predict the other's derivative.

Reads both runs' trace/ (loss.npy, axis.parquet, inputs.npy), fit/ events and tokens/tokenizer.json
(of one weight series); writes RUN/spectrum/replicate.json and replicate_series.parquet. Refuses
replicates whose traced tokens or tokenizer differ; checkpoint steps that differ are intersected
(the summary says how many were dropped).
"""
from __future__ import annotations

import numpy as np

from tokenclock.artifacts import (
    file_sha256,
    json_safe,
    read_json,
    read_npy,
    read_parquet,
    write_json,
    write_parquet,
)
from tokenclock.errors import DataError, RunDirError
from tokenclock.manifest import load_manifest
from tokenclock.rundir import RunDir
from tokenclock.scores import r2_score, replicate_r2
from tokenclock.stages.spectrum.config import SpectrumConfig
from tokenclock.stages.spectrum.reconstruct import measured_curve, measured_derivative, reconstruct_derivative
from tokenclock.stages.spectrum.stage import finite_events, warmup_end

PRIMARY = "step"  # replicates are compared on the step clock: the one both runs share exactly


def check_replicates(a: RunDir, b: RunDir) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The rows of A's and B's traces at their common checkpoint steps, and the steps dropped
    (in one run only). Refuses runs that are not replicates (traced tokens, tokenizer)."""
    for r in (a, b):
        if not r.trace_loss.is_file():
            raise RunDirError(f"{r.trace_loss} is missing", f"run `{r.command('trace')}` first")
        if not r.fit_events.is_file():
            raise RunDirError(f"{r.fit_events} is missing", f"run `{r.command('fit')}` first")
    if a.tokenizer.is_file() != b.tokenizer.is_file() or (a.tokenizer.is_file() and file_sha256(a.tokenizer) != file_sha256(b.tokenizer)):
        raise DataError(f"{b.root} is not a replicate of {a.root}: their tokenizers differ "
                        f"({a.tokenizer} vs {b.tokenizer})",
                        "train the replicate with the same corpus and tokens config (only train.data_seed differs)")
    ia, ib = read_npy(a.trace_inputs), read_npy(b.trace_inputs)
    if ia.shape != ib.shape or not np.array_equal(ia, ib):
        raise DataError(f"{b.root} is not a replicate of {a.root}: they traced different validation tokens "
                        f"({ia.shape[0]} x {ia.shape[1] - 1} vs {ib.shape[0]} x {ib.shape[1] - 1}"
                        f"{', same shape, other sequences' if ia.shape == ib.shape else ''})",
                        "trace both with the same trace.n_seqs, trace.seq_len and trace.seed")
    sa = np.asarray(read_parquet(a.trace_axis)["step"], np.int64)
    sb = np.asarray(read_parquet(b.trace_axis)["step"], np.int64)
    common = np.intersect1d(sa[sa > 0], sb[sb > 0])
    if len(common) < 4:
        raise DataError(f"{a.root} and {b.root} share {len(common)} checkpoint steps (> 0); a ceiling needs 4 or more",
                        "train both with the same train.steps and checkpoint schedule")
    dropped = sorted(set(sa[sa > 0].tolist()) ^ set(sb[sb > 0].tolist()))
    return np.searchsorted(sa, common), np.searchsorted(sb, common), dropped


def _series(run: RunDir, rows: np.ndarray, u: np.ndarray, smoothing: int) -> tuple[np.ndarray, np.ndarray]:
    """(measured -dL/du, reconstructed -dL/du from the run's own events) at the given trace rows."""
    loss = read_npy(run.trace_loss, mmap=True)
    keep = np.zeros(loss.shape[0], bool)
    keep[rows] = True
    meas = measured_derivative(measured_curve(loss, keep), u, smoothing)
    events, _ = finite_events(read_parquet(run.fit_events, columns=["a", "mu", "width"]))
    rec = reconstruct_derivative(events, loss.shape[1], u)
    return meas, rec


def _pair(pred: np.ndarray, meas: np.ndarray, after: np.ndarray) -> dict:
    return {"all": r2_score(pred, meas), "after_warmup": r2_score(pred[after], meas[after])}


def replicate(run_a: RunDir | str, run_b: RunDir | str, cfg=None, *, progress: bool = True) -> dict:
    """The replicate ceiling of A's -dL/du against B's, each run's reconstruction R^2 on the common
    checkpoints and their ratio to the ceiling, and the cross reconstructions (A's events vs B's
    derivative and back). Writes A's spectrum/replicate.json and replicate_series.parquet."""
    a, b = RunDir(run_a), RunDir(run_b, RunDir(run_a).weights)
    cfg = cfg or SpectrumConfig()
    smoothing = cfg.smoothing
    ra, rb, dropped = check_replicates(a, b)
    steps = np.asarray(read_parquet(a.trace_axis)["step"], np.int64)[ra]
    u = np.log(steps.astype(np.float64))
    warm = warmup_end(a, cfg)
    after = steps >= warm
    meas_a, rec_a = _series(a, ra, u, smoothing)
    meas_b, rec_b = _series(b, rb, u, smoothing)
    ceiling = {"a_predicts_b": _pair(meas_a, meas_b, after), "b_predicts_a": _pair(meas_b, meas_a, after)}
    ceiling["mean"] = {"all": replicate_r2([meas_a, meas_b]),
                       "after_warmup": replicate_r2([meas_a[after], meas_b[after]])}
    own = {"a": _pair(rec_a, meas_a, after), "b": _pair(rec_b, meas_b, after)}
    cross = {"a_events_predict_b": _pair(rec_a, meas_b, after), "b_events_predict_a": _pair(rec_b, meas_a, after)}
    ratio = {r: {k: own[r][k] / ceiling["mean"][k] if ceiling["mean"][k] > 0 else float("nan")
                 for k in ("all", "after_warmup")} for r in own}
    heldout = {}
    for name, run in (("a", a), ("b", b)):
        ss = read_json(run.spectrum_summary) if run.spectrum_summary.is_file() else {}
        if not dropped and ss:  # each run's own held-out scores, on the same checkpoints
            heldout[name] = {k: ss.get(k) for k in ("reconstruction_r2_heldout_after_warmup",
                                                    "reconstruction_r2_block_heldout_after_warmup")}
            c = ceiling["mean"]["after_warmup"]
            heldout[name]["ratio_to_ceiling"] = {k: (v / c if isinstance(v, (int, float)) and c > 0 else None)
                                                 for k, v in list(heldout[name].items())}
    out = {"run": str(a.root), "replicate": str(b.root), "weights": a.weights, "axis": PRIMARY,
           "n_ckpt": int(len(steps)), "after_step": warm, "n_ckpt_after_warmup": int(after.sum()),
           "steps_dropped": dropped,
           "note": (f"{len(dropped)} checkpoint step(s) in only one run were left out" if dropped else
                    "both runs traced the same checkpoint steps"),
           "ceiling_r2": ceiling, "reconstruction_r2": own, "ratio_to_ceiling": ratio,
           "cross_reconstruction_r2": cross, "heldout": heldout,
           "data_seeds": [_data_seed(a), _data_seed(b)]}
    write_parquet(a.spectrum_replicate_curve,
                  {"step": steps, "u": u, "after_warmup": after, "dldu_measured_a": meas_a,
                   "dldu_measured_b": meas_b, "dldu_reconstructed_a": rec_a, "dldu_reconstructed_b": rec_b})
    write_json(a.spectrum_replicate, json_safe(out))
    return json_safe(out)


def _data_seed(run: RunDir):
    conf = load_manifest(run)["stages"].get("train", {}).get("config") or {}
    ds = (conf.get("train") or {}).get("data_seed")
    return conf.get("seed") if ds is None else ds
