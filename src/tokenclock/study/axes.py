"""The study's axes: each run's final per-token losses (STUDY_DIR/finals/<run>.npy), the D and M axes
built from them (STUDY_DIR/axes/{D_<model>,M_<budget>}/: run-like trace/, fit/, spectrum/ and
losses.npz), and the T axis (trace, fit and spectrum of the longest run of the largest model).
torch and transformers are imported inside final_losses, for start-up time.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, write_json, write_npy, write_parquet
from tokenclock.errors import TokenclockError, TrainingError
from tokenclock.forward import resolve_device, token_losses, trace_dtype
from tokenclock.manifest import stage_status
from tokenclock.rundir import RAW, RunDir, StudyDir
from tokenclock.scores import replicate_r2
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.spectrum.reconstruct import measured_derivative
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.tokens.tokenizer import load_tokenizer
from tokenclock.stages.trace.npz import MIN_POINTS, export_npz
from tokenclock.stages.trace.stage import token_table, trace
from tokenclock.stages.train.model import preset_params
from tokenclock.study.config import Study
from tokenclock.study.fitrules import choose_rule, rule_config

AXIS_KEYS = ("reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_block_heldout",
             "reconstruction_r2_loo", "reconstruction_r2_discrete", "reconstruction_r2_heldout_discrete",
             "reconstruction_r2_loo_discrete",
             "token_split_r2", "token_split_ceiling_r2", "mean_rel_error", "loss_r2",
             "event_share", "alpha_measured", "alpha_spectrum", "n_events", "n_ckpt")
T_KEYS = ("reconstruction_r2", "reconstruction_r2_heldout", "alpha_measured", "alpha_spectrum", "n_ckpt")


def final_losses(sd: StudyDir, name: str, inputs: np.ndarray, cfg, weights: str = RAW) -> np.ndarray:
    """Per-token loss (n_tok,) of a run's final checkpoint (weights avg: its averaged weights,
    ckpt_avg/) on the shared inputs; cached in STUDY_DIR/finals[_avg]/<name>.npy."""
    import torch
    from transformers import AutoModelForCausalLM

    out = sd.final_losses(name, weights)
    run = sd.run(name).series(weights)
    if out.is_file():
        arr = read_npy(out)
        if arr.shape == (inputs.shape[0] * (inputs.shape[1] - 1),):
            return arr
    steps = run.ckpt_steps()
    if not steps:
        raise TrainingError(f"run {name} has no {run.weights_dir.name}/ checkpoint",
                            "train it with train.avg: ema, or leave avg out of study.weights")
    step = steps[-1]
    device = resolve_device(cfg.trace.device)
    amp = trace_dtype(cfg.trace.dtype, device)
    model = AutoModelForCausalLM.from_pretrained(run.ckpt(step), dtype=torch.float32).to(device).eval()
    toks = torch.from_numpy(inputs.astype(np.int64))
    parts = [token_losses(model, toks[b:b + cfg.trace.batch_size], amp, device).float().cpu().numpy().reshape(-1)
             for b in range(0, len(toks), cfg.trace.batch_size)]
    loss = np.concatenate(parts).astype(np.float32)
    if not np.isfinite(loss).all():
        raise TrainingError(f"run {name}: the final checkpoint gives non-finite token losses",
                            "the run diverged; lower train.lr_peak")
    write_npy(out, loss)
    return loss


def write_axis(ax: RunDir, column: str, x: np.ndarray, loss_kn: np.ndarray, token_cols: dict,
               extra_meta: dict) -> RunDir:
    """A run-like directory STUDY_DIR/axes/<name>/ with trace/{loss.npy, axis.parquet, tokens.parquet,
    meta.json} (the files the trace stage writes, see stages/trace/stage.py), so fit() and
    spectrum() run on it unchanged."""
    for sub in (ax.fit_dir, ax.spectrum_dir):  # stale results of a previous grid
        shutil.rmtree(sub, ignore_errors=True)
    write_npy(ax.trace_loss, np.ascontiguousarray(loss_kn, dtype=np.float32))
    write_parquet(ax.trace_axis, {column: np.asarray(x, np.int64)})
    write_parquet(ax.trace_tokens, token_cols)
    write_json(ax.trace_meta, {"n_tok": int(loss_kn.shape[1]), "n_ckpt": int(loss_kn.shape[0]),
                               "axes": [column], "source": "study", **extra_meta})
    return ax


def analyze_axis(ax: RunDir, npz: Path, column: str, kind: str, fit_cfg, spec_cfg, progress: bool) -> dict:
    """fit + spectrum of an axis directory along `column` with `fit_cfg` (a rule's), and its
    losses.npz with axis_name `kind` (D or M)."""
    fsum = fit(ax, dataclasses.replace(fit_cfg, axis=column, extra_axes=[]), progress=progress)
    ssum = spectrum(ax, spec_cfg, progress=progress)
    export_npz(ax.root, npz, axis=column, axis_name=kind)
    return {k: ssum.get(k) for k in AXIS_KEYS} | {"median_fit_r2": fsum.get("median_r2"),
                                                  "sigmoid_share": fsum.get("sigmoid_share"),
                                                  "fit_rule": fsum.get("rule")}


def seed_losses(sd: StudyDir, good: dict, model: str, steps: int, weights: str = RAW) -> dict[int, np.ndarray]:
    """{seed: per-token final loss} of (model, budget), for the seeds that finished."""
    return {int(s["seed"]): read_npy(sd.final_losses(n, weights)) for n, s in good.items()
            if s["model"] == model and s["steps"] == steps}


def replicate_ceiling(ax: RunDir, x: np.ndarray, per_seed: list[dict[int, np.ndarray]], smoothing: int) -> dict:
    """The axis' replicate ceiling: the R^2 between the measured -dL/du of two seeds along the
    axis points every seed finished (each way, averaged over all pairs of seeds), and the per-seed
    curves in the axis' spectrum/replicate_series.parquet. Needs two seeds."""
    seeds = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    if len(seeds) < 2:
        return {"replicate_ceiling_r2": None, "n_seeds": len(seeds),
                "replicate_note": "the replicate ceiling needs two or more study.seeds"}
    u = np.log(np.asarray(x, np.float64))
    meas = {s: measured_derivative(np.array([p[s].mean(dtype=np.float64) for p in per_seed]), u, smoothing)
            for s in seeds}
    ceiling = replicate_r2(meas[s] for s in seeds)
    cols = {"x": np.asarray(x, np.float64), "u": u, **{f"dldu_measured_seed{s}": meas[s] for s in seeds}}
    write_parquet(ax.spectrum_replicate_curve, cols)
    return {"replicate_ceiling_r2": ceiling if np.isfinite(ceiling) else None, "n_seeds": len(seeds)}


def build_axes(sd: StudyDir, st: Study, good: dict, inputs: np.ndarray, cfg0, progress: bool,
               weights: str = RAW, choose_from: dict | None = None) -> tuple[dict, dict]:
    """D_<model> (loss over budgets, one model) and M_<budget> (loss over model sizes, one budget)
    from the finished runs `good` {name: study.json record} and their `weights` finals; an axis
    with fewer than MIN_POINTS finished runs is skipped, one whose fit or spectrum fails is
    recorded as failed. With several study.axis_fit_rules, each axis kind is fitted under every
    rule and keeps the one with the best mean leave-one-out R^2, or (choose_from: another series'
    fit_rules) the rule chosen there. Every axis is scored on held-out points both ways (every
    other point; leave one out). Returns (axes, fit_rules)."""
    tok = load_tokenizer(sd.shared.tokenizer)
    counts = read_npy(sd.shared.token_counts) if sd.shared.token_counts.is_file() else None
    token_cols = token_table(tok, inputs, counts, cfg0.trace.context_tokens)
    per_step = cfg0.train.batch_size * cfg0.train.seq_len
    n_params = {m: next((s["n_params"] for s in good.values() if s["model"] == m), preset_params(m))
                for m in st.models()}
    rules = list(st.study.axis_fit_rules)
    spec_cfg = dataclasses.replace(cfg0.spectrum, leave_one_out=True)
    axes: dict[str, dict] = {}
    fit_rules: dict[str, dict] = {}
    for kind, keys, others in (("D", st.models(), st.budgets()), ("M", st.budgets(), st.models())):
        built: dict[str, tuple] = {}  # name -> (column, x, per-point seed losses)
        for key in keys:
            name = f"D_{key}" if kind == "D" else f"M_{key:07d}"
            # per point: {seed: final losses}, read once; the trajectory is their mean over seeds
            seeds = [(o, seed_losses(sd, good, *((key, o) if kind == "D" else (o, key)), weights)) for o in others]
            seeds = [(o, d) for o, d in seeds if d]
            if len(seeds) < MIN_POINTS:
                axes[name] = {"status": "skipped", "n_points": len(seeds),
                              "error": f"{len(seeds)} finished runs on this axis; fitting needs {MIN_POINTS}"}
                continue
            column = "tokens_seen" if kind == "D" else "n_params"
            x = np.array([o * per_step if kind == "D" else n_params[o] for o, _ in seeds])
            order = np.argsort(x)
            loss_kn = np.stack([np.mean(list(seeds[i][1].values()), axis=0) for i in order])
            write_axis(sd.axis(name, weights), column, x[order], loss_kn, token_cols,
                       {"vocab_size": tok.get_vocab_size(), "axis_name": kind, "fixed": key,
                        "weights": weights, "seeds": list(st.study.seeds)})
            axes[name] = {"status": "done", "axis": kind, "column": column, "fixed": key, "weights": weights,
                          "x": x[order].tolist()}
            built[name] = (column, x[order], [seeds[i][1] for i in order])
        chosen = rules[0]
        if isinstance(choose_from, dict) and kind in choose_from:   # the first series' choice
            chosen = choose_from[kind]["chosen"]
            fit_rules[kind] = {"chosen": chosen, "chosen_on": choose_from[kind].get("chosen_on")}
        elif len(rules) > 1 and built:
            fit_rules[kind] = _compare_rules(sd, built, kind, rules, cfg0, weights, progress)
            chosen = fit_rules[kind]["chosen"]
        for name, (column, x, per_seed) in built.items():
            ax = sd.axis(name, weights)
            try:
                axes[name].update(analyze_axis(ax, sd.axis_npz(name, weights), column, kind,
                                               rule_config(cfg0.fit, chosen), spec_cfg, progress))
            except TokenclockError as e:
                axes[name] = {"status": "failed", "axis": kind, "error": str(e).splitlines()[0]}
                continue
            rep = replicate_ceiling(ax, x, per_seed, cfg0.spectrum.smoothing)
            ceil = rep["replicate_ceiling_r2"]
            for score, ratio in (("reconstruction_r2_heldout", "heldout_ratio_to_ceiling"),
                                 ("reconstruction_r2_loo", "loo_ratio_to_ceiling")):
                r2 = axes[name].get(score)
                rep[ratio] = r2 / ceil if r2 is not None and ceil and ceil > 0 else None
            axes[name].update(rep)
    return axes, fit_rules


def _compare_rules(sd: StudyDir, built: dict, kind: str, rules: list[str], cfg0, weights: str,
                   progress: bool) -> dict:
    """Every rule's held-out R^2 on every axis of one kind, both ways (every other point;
    leave one out), and the rule choose_rule picks by the leave-one-out scores: on an axis of
    K points the every-other split fits on K/2, too few for two events below K = 18."""
    quick = dataclasses.replace(cfg0.spectrum, block_size=0, token_split=False, heldout=True, leave_one_out=True)
    loo: dict[str, dict] = {r: {} for r in rules}
    held: dict[str, dict] = {r: {} for r in rules}
    for rule in rules:
        for name, (column, _x, _p) in built.items():
            ax = sd.axis(name, weights)
            try:
                fit(ax, dataclasses.replace(rule_config(cfg0.fit, rule), axis=column, extra_axes=[]),
                    progress=progress)
                s = spectrum(ax, quick, progress=progress)
            except TokenclockError:
                s = {}
            for store, key in ((loo, "reconstruction_r2_loo"), (held, "reconstruction_r2_heldout")):
                v = s.get(key)
                store[rule][name] = None if v is None or not np.isfinite(v) else float(v)
    out = choose_rule(loo, rules)
    out.update(axis=kind, chosen_on=weights, heldout_every_other_r2=held,
               heldout_every_other_r2_mean={r: (float(np.mean([v for v in held[r].values() if v is not None]))
                                                if any(v is not None for v in held[r].values()) else None)
                                            for r in rules})
    return out


def t_axis(sd: StudyDir, good: dict, cfg0, sig: dict, progress: bool) -> dict:
    """The T axis: trace, fit (along step) and spectrum of the densest-checkpointed run of the
    largest model (its stable or longest full run), on the shared traced tokens."""
    cands = [(s["n_params"], s["steps"], n) for n, s in good.items() if s["kind"] in ("full", "stable")]
    if not cands:
        return {"status": "skipped", "error": "no finished full or stable run"}
    name = max(cands)[2]
    run = sd.run(name)
    try:
        tcfg = dataclasses.replace(cfg0.trace, seed=sig["trace_seed"], seq_len=sig["seq_len"])
        if stage_status(run, "spectrum") != "done":
            trace(run.root, tcfg, progress=progress)
            fit(run, dataclasses.replace(cfg0.fit, axis="step"), progress=progress)
            spectrum(run, cfg0.spectrum, progress=progress)
        s = read_json(run.spectrum_summary)
    except TokenclockError as e:
        return {"status": "failed", "run": name, "error": str(e).splitlines()[0]}
    return {"status": "done", "run": name, "column": "step", **{k: s.get(k) for k in T_KEYS}}


def axes_summary(axes: dict, t: dict) -> dict:
    """study.json: summary, the headline of each axis kind (D and M over their axes, and T)."""
    out = {}
    for kind in ("D", "M"):
        done = [a for a in axes.values() if a.get("axis") == kind and a["status"] == "done"]
        r2 = [a["reconstruction_r2"] for a in done if a.get("reconstruction_r2") is not None]
        am = [a["alpha_measured"] for a in done if a.get("alpha_measured") is not None]
        asp = [a["alpha_spectrum"] for a in done if a.get("alpha_spectrum") is not None]
        def mean(key: str):
            v = [a[key] for a in done if a.get(key) is not None]
            return float(np.mean(v)) if v else None

        def lowest(key: str):
            return min((a[key] for a in done if a.get(key) is not None), default=None)

        out[kind] = {"n_axes": len(done), "reconstruction_r2_mean": float(np.mean(r2)) if r2 else None,
                     "reconstruction_r2_heldout_mean": mean("reconstruction_r2_heldout"),
                     "replicate_ceiling_r2_mean": mean("replicate_ceiling_r2"),
                     "heldout_ratio_to_ceiling_mean": mean("heldout_ratio_to_ceiling"),
                     "reconstruction_r2_min": float(np.min(r2)) if r2 else None,
                     "reconstruction_r2_heldout_min": lowest("reconstruction_r2_heldout"),
                     "reconstruction_r2_block_heldout_mean": mean("reconstruction_r2_block_heldout"),
                     "reconstruction_r2_loo_mean": mean("reconstruction_r2_loo"),
                     "reconstruction_r2_loo_min": lowest("reconstruction_r2_loo"),
                     "loo_ratio_to_ceiling_mean": mean("loo_ratio_to_ceiling"),
                     "reconstruction_r2_discrete_mean": mean("reconstruction_r2_discrete"),
                     "reconstruction_r2_heldout_discrete_mean": mean("reconstruction_r2_heldout_discrete"),
                     "reconstruction_r2_loo_discrete_mean": mean("reconstruction_r2_loo_discrete"),
                     "fit_rule": next((a.get("fit_rule") for a in done), None),
                     "alpha_measured_median": float(np.median(am)) if am else None,
                     "alpha_spectrum_median": float(np.median(asp)) if asp else None}
    out["T"] = {k: t.get(k) for k in ("reconstruction_r2", "alpha_measured", "alpha_spectrum")}
    return out
