"""The study stage: a grid of runs (model sizes x token budgets x seeds) on one shared corpus,
tokenizer and traced validation token set, turned into the D, M and T axes and the Chinchilla baseline.

Reads a study (study/config.py: the `study:` grid + the `base:` tokenclock config). Writes, under
the names of rundir.StudyDir: STUDY_DIR/shared/ (corpus, tokens, trace/inputs.npy), runs/<name>/
(normal run directories), finals/<name>.npy (final per-token losses), axes/{D_<model>,M_<budget>}/
(run-like: trace/, fit/, spectrum/, losses.npz), chinchilla.json, study.json and report/.

Token budgets are realized as full runs (mode `full`: each budget trains from scratch with the
base schedule) or as WSD cooldown branches (mode `branches`: one stable-phase run per model and
seed; budget b branches off at S_b = b - round(decay_fraction * b) with the AdamW state and decays
over its own last decay_fraction, exactly the lr a WSD run of b steps would use).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from tokenclock import pipeline  # called as pipeline.train, so a test can replace it
from tokenclock.artifacts import read_npy, write_json
from tokenclock.errors import ConfigError, DataError, RunLockedError, TokenclockError
from tokenclock.manifest import load_manifest, stage_status
from tokenclock.rundir import AVG, RAW, StudyDir, series_key
from tokenclock.stages.train.model import preset_params
from tokenclock.study.axes import axes_summary, build_axes, final_losses, t_axis
from tokenclock.study.chinchilla import fit_chinchilla
from tokenclock.study.config import Study
from tokenclock.study.plan import PlannedRun, branch_start, plan
from tokenclock.study.regimes import check_regimes
from tokenclock.study.report import study_report
from tokenclock.study.shared import check_same_inputs, prepare_shared, seed_run

CHINCHILLA_KEYS = ("E", "A", "alpha", "B", "beta", "r2_log", "at_bound")


def study(root: str | Path, st: Study, *, progress: bool = True, only: str | None = None) -> dict:
    """Run (or resume) the whole study in `root`; returns study.json's contents. A run that fails
    with a TokenclockError is recorded as failed and the rest go on.

    `only` splits a study over a job array: "prepare" builds the shared corpus, tokens and traced
    inputs and stops; an integer K trains the runs of the K-th model (its stable run and branches,
    every seed) and stops. A final call without `only` skips finished runs and builds the axes."""
    sd = StudyDir(Path(root).resolve())
    sd.root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg0 = st.base_config
    sig = _prepare_shared_waiting(sd, st, progress, wait_s=0 if only is None else 600)
    regimes = check_regimes(sd.shared, st)
    if only == "prepare":
        return {"shared": sig}
    runs = _selected_runs(st, only)
    check_same_inputs(sd, [r.name for r in runs], sig)
    inputs = read_npy(sd.shared.trace_inputs).astype(np.int64)
    per_step = cfg0.train.batch_size * cfg0.train.seq_len
    status: dict[str, dict] = {}
    manifest = {"config": {"study": dataclasses.asdict(st.study), "base": st.base}, "shared": sig,
                "runs": status, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if regimes is not None:
        manifest["regimes"] = regimes
    for r in runs:
        status[r.name] = rec = {"model": r.model, "seed": r.seed, "steps": r.steps,
                                "tokens_seen": r.steps * per_step, "kind": r.kind, "parent": r.parent,
                                "n_params": preset_params(r.model)}
        parent_done = r.parent is None or status.get(r.parent, {}).get("status") == "done"
        train_run(sd, st, r, rec, parent_done, sig, inputs, progress)
        if only is None:
            write_json(sd.manifest, manifest)
    if only is not None:
        return manifest

    # D and M axes from the good runs (per-token losses averaged over seeds), per weight series
    good = {n: s for n, s in status.items() if s.get("status") == "done" and s["kind"] != "compare"}
    manifest["fit_rules"] = {}
    for w in st.study.weights:  # the rule is chosen on the first series (raw) and kept for the others
        key = series_key("axes", w)
        first = manifest["fit_rules"].get(st.study.weights[0]) if w != st.study.weights[0] else None
        manifest[key], manifest["fit_rules"][w] = build_axes(sd, st, good, inputs, cfg0, progress, w, first)
    axes = manifest[series_key("axes", RAW if RAW in st.study.weights else AVG)]
    if not any(a["status"] == "done" for a in axes.values()):
        write_json(sd.manifest, manifest)
        raise DataError("no D or M axis has 4 finished runs", "fix the failed runs (see study.json) "
                        "or add budgets/models, then rerun the same command")
    manifest["T"] = t_axis(sd, good, cfg0, sig, progress)
    manifest["summary"] = axes_summary(axes, manifest["T"])
    for w in st.study.weights:
        if w != RAW:
            manifest[series_key("summary", w)] = axes_summary(manifest[series_key("axes", w)], manifest["T"])
    manifest["branch_vs_full"] = branch_vs_full(status)
    manifest["chinchilla"] = chinchilla_baseline(sd, good, st.study.bootstrap)
    manifest["seconds"] = round(time.time() - t0, 2)
    manifest["n_failed"] = sum(s.get("status") == "failed" for s in status.values())
    write_json(sd.manifest, manifest)
    study_report(sd.root)
    return manifest


def _prepare_shared_waiting(sd: StudyDir, st: Study, progress: bool, wait_s: float) -> dict:
    """prepare_shared; a job of a job array (`only`) whose sibling holds STUDY_DIR/shared/ for a
    moment (its own check that the shared inputs are up to date) waits for it, up to wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return prepare_shared(sd, st, progress)
        except RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _selected_runs(st: Study, only: str | None) -> list[PlannedRun]:
    """The plan, or with `only` = K the runs of the K-th model (one job of a job array)."""
    runs = plan(st)
    if only is None:
        return runs
    models = st.models()
    if not (only.isdigit() and int(only) < len(models)):
        raise ConfigError(f"--only {only!r} is neither 'prepare' nor a model index 0..{len(models) - 1}",
                          "pass the job array index, e.g. --only $SLURM_ARRAY_TASK_ID")
    return [r for r in runs if r.model == models[int(only)]]


def train_run(sd: StudyDir, st: Study, r: PlannedRun, rec: dict, parent_done: bool, sig: dict,
              inputs: np.ndarray, progress: bool) -> None:
    """Train one planned run (skipped when trained) and record it in `rec` (its study.json entry):
    done with its final losses, failed with the error's first line (the study goes on), or skipped
    when it is a branch whose stable run did not finish."""
    run = seed_run(sd, r.name)
    if not parent_done:
        rec.update(status="skipped", error=f"its stable run {r.parent} did not finish")
        return
    over = dict(r.train)
    if r.parent is not None:  # relative to the study directory, so the study can be moved
        start = sd.run(r.parent).ckpt(branch_start(r.steps, st.study.decay_fraction))
        over["init_from"] = start.relative_to(sd.root).as_posix()
    was_done = stage_status(run, "train") == "done"
    t_run = time.time()
    try:
        cfg = st.run_config(r.seed, r.model, over)
        summ = pipeline.train(run.root, cfg, progress=progress, init_root=sd.root)
        check_same_inputs(sd, [r.name], sig)
        loss = final_losses(sd, r.name, inputs, cfg)
        extra = {series_key("final_trace_loss", w): float(np.mean(final_losses(sd, r.name, inputs, cfg, w)))
                 for w in st.study.weights if w != RAW}
    except TokenclockError as e:
        rec.update(status="failed", error=str(e).splitlines()[0], error_type=type(e).__name__)
        print(f"tokenclock: error: run {r.name}: {rec['error']}", file=sys.stderr)
        return
    rec.update(status="done", cached=was_done, seconds=round(time.time() - t_run, 2),
               train_seconds=(load_manifest(run)["stages"]["train"].get("seconds")),
               n_params=int(summ.get("n_params", rec["n_params"])),
               final_val_loss=summ.get("final_val_loss"), final_trace_loss=float(np.mean(loss)), **extra)


def chinchilla_baseline(sd: StudyDir, good: dict, n_boot: int) -> dict:
    """The classical baseline: L(N, D) fitted to the finished runs' final trace losses, written to
    STUDY_DIR/chinchilla.json; returns its parameters for study.json."""
    fin = list(good.values())
    try:
        ch = fit_chinchilla([s["n_params"] for s in fin], [s["tokens_seen"] for s in fin],
                            [s["final_trace_loss"] for s in fin], n_boot=n_boot)
        ch["loss"] = "mean per-token loss of the final checkpoint on the shared traced tokens (nats)"
        ch["n"] = "non-embedding parameters"
        ch["D"] = "tokens seen"
    except TokenclockError as e:
        ch = {"status": "failed", "error": str(e).splitlines()[0]}
    write_json(sd.chinchilla, ch)
    return {k: ch.get(k) for k in CHINCHILLA_KEYS}


def branch_vs_full(status: dict) -> list[dict]:
    """Each compare run (`<name>_full`, base schedule) beside its branch or stable twin."""
    rows = []
    for name, s in status.items():
        if s["kind"] != "compare" or s.get("status") != "done":
            continue
        twin = status.get(name[: -len("_full")], {})
        if twin.get("status") == "done":
            rows.append({"model": s["model"], "seed": s["seed"], "steps": s["steps"],
                         "branch_kind": twin["kind"],
                         "branch_loss": twin["final_trace_loss"], "full_loss": s["final_trace_loss"],
                         "diff_nats": twin["final_trace_loss"] - s["final_trace_loss"],
                         "branch_train_seconds": twin.get("train_seconds"),
                         "full_train_seconds": s.get("train_seconds")})
    return rows
