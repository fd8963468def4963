"""The study: a grid of runs (model sizes x token budgets x seeds) on one shared corpus, tokenizer and
traced validation token set, turned into the D and M axes.

Reads a study config (YAML: `study:` grid + `base:` tokenclock config). Writes STUDY_DIR/shared/
(corpus, tokens, trace/inputs.npy), STUDY_DIR/runs/<name>/ (normal run directories),
STUDY_DIR/finals/<name>.npy (final per-token losses), STUDY_DIR/axes/{D_<model>,M_<budget>}/
(run-like: trace/, fit/, spectrum/, losses.npz), STUDY_DIR/chinchilla.json, STUDY_DIR/study.json.

Token budgets are realized as full runs (mode `full`: each budget trains from scratch with the
base schedule) or as WSD cooldown branches (mode `branches`: one stable-phase run per model and
seed; budget b branches off at S_b = b - round(decay_fraction * b) with the AdamW state and decays
over its own last decay_fraction, exactly the lr a WSD run of b steps would use).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from tokenclock import pipeline
from tokenclock.config import (_merge, build_section, config_from_dict, parse_overrides,
                               resolve_config_path)
from tokenclock.errors import ConfigError, DataError, TokenclockError, TokenizerError, TrainingError
from tokenclock.rundir import RunDir, load_manifest, stage_status
from tokenclock.artifacts import read_json, read_npy, write_json, write_npy, write_parquet
from tokenclock.scoring import resolve_device, token_losses, trace_dtype
from tokenclock.stages.data.corpus import build_corpus
from tokenclock.stages.data.tokens import load_tokenizer, tokenize
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.study.chinchilla import fit_chinchilla
from tokenclock.study.report import study_report
from tokenclock.stages.trace.npz import export_npz
from tokenclock.stages.trace.stage import token_table, trace
from tokenclock.stages.train.model import PRESETS, preset_params
from tokenclock.windows import val_offsets

MIN_POINTS = 4
MODES = ("branches", "full")


@dataclass
class StudyConfig:
    """The grid (section `study` of a study config)."""

    models: list[str] = field(default_factory=list)
    """Model presets (tokenclock.model.PRESETS): the M axis, >= 4 distinct sizes."""
    budgets_steps: list[int] = field(default_factory=list)
    """Token budgets in optimizer steps (tokens = steps x batch_size x seq_len): the D axis, >= 4."""
    budgets_tokens: list[int] = field(default_factory=list)
    """Token budgets in tokens, rounded to whole steps; give this or budgets_steps."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One run per seed; axes average the per-token final losses over seeds."""
    mode: str = "branches"
    """branches: WSD cooldown branches off one stable run per model (cheap); full: one run per
    budget with the base schedule (the classical grid)."""
    decay_fraction: float = 0.2
    """branches: share of each budget spent decaying the lr (train.decay_fraction of every run)."""
    compare_full_steps: list[int] = field(default_factory=list)
    """branches: budgets (steps) also trained as full runs with the base schedule, to measure the
    branch-vs-full difference (study.json: branch_vs_full); not used for the axes."""
    bootstrap: int = 100
    """Bootstrap resamples of runs for the Chinchilla intervals."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown study.mode '{self.mode}'", "use branches or full")
        for m in self.models:
            if m not in PRESETS:
                raise ConfigError(f"unknown model preset '{m}' in study.models",
                                  f"choose from {', '.join(PRESETS)}")
        if self.budgets_steps and self.budgets_tokens:
            raise ConfigError("give study.budgets_steps or study.budgets_tokens, not both")
        if any(b < 1 for b in self.budgets_steps + self.budgets_tokens):
            raise ConfigError("study budgets must be >= 1")
        if not 0 < self.decay_fraction < 1:
            raise ConfigError(f"study.decay_fraction must be in (0, 1), got {self.decay_fraction}")
        if not self.seeds:
            raise ConfigError("study.seeds is empty", "write seeds: [0]")
        if len(set(self.models)) < MIN_POINTS:
            raise DataError(f"the M axis has {len(set(self.models))} model sizes; fitting needs at least "
                            f"{MIN_POINTS}", f"add models to study.models (e.g. from `tokenclock presets`)")
        n_b = len(set(self.budgets_steps or self.budgets_tokens))
        if n_b < MIN_POINTS:
            raise DataError(f"the D axis has {n_b} token budgets; fitting needs at least {MIN_POINTS}",
                            "add budgets to study.budgets_steps or study.budgets_tokens")
        if self.bootstrap < 0:
            raise ConfigError("study.bootstrap must be >= 0")


@dataclass
class Study:
    study: StudyConfig
    base: dict  # the `base:` section, a normal tokenclock config as a dict

    def run_config(self, seed: int, model: str, train_over: dict):
        return config_from_dict(_merge(self.base, {"seed": seed, "model": {"preset": model},
                                                   "train": train_over}))

    @property
    def base_config(self):
        return config_from_dict(self.base)

    def budgets(self) -> list[int]:
        """Budgets in steps, sorted, unique."""
        tc = self.base_config.train
        if self.study.budgets_steps:
            return sorted(set(self.study.budgets_steps))
        per = tc.batch_size * tc.seq_len
        steps = sorted({max(1, int(round(t / per))) for t in self.study.budgets_tokens})
        if len(steps) < MIN_POINTS:
            raise DataError(f"study.budgets_tokens round to {len(steps)} distinct step counts at "
                            f"{per} tokens per step", "spread the budgets further apart")
        return steps

    def models(self) -> list[str]:
        """Models sorted by non-embedding parameters."""
        ms = sorted(set(self.study.models), key=preset_params)
        sizes = [preset_params(m) for m in ms]
        if len(set(sizes)) < len(sizes):
            raise ConfigError("two study.models have the same parameter count", "pick distinct sizes")
        return ms


def load_study(path: str | Path, overrides: list[str] | dict | None = None) -> Study:
    """A study config file (or preset name, e.g. study-tiny) plus `--set` overrides: keys under
    `study.` set the grid, `base.x.y` or plain `x.y` set the base run config."""
    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or "study" not in data:
        raise ConfigError(f"{p} has no `study:` section", "a study config holds `study:` (the grid) "
                          "and `base:` (a normal tokenclock config)")
    unknown = set(data) - {"study", "base"}
    if unknown:
        raise ConfigError(f"unknown study config section '{sorted(unknown)[0]}'",
                          "a study config has only `study:` and `base:`")
    over = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    over = dict(over)
    s_over = over.pop("study", {})
    b_over = over.pop("base", {})
    b_over = _merge(over, b_over)  # plain train.x=... means base.train.x
    study = build_section(StudyConfig, _merge(data.get("study") or {}, s_over), "study")
    base = _merge(data.get("base") or {}, b_over)
    config_from_dict(base)  # check every key of the base config once, up front
    return Study(study=study, base=base)


# ----------------------------------------------------------------------------- the plan


@dataclass
class PlannedRun:
    name: str
    model: str
    seed: int
    steps: int  # budget in steps
    kind: str  # full | stable | branch | compare
    train: dict  # overrides of the base train section
    parent: str | None = None  # branch: the stable run it starts from


def branch_start(steps: int, decay_fraction: float) -> int:
    """First decaying step of a WSD run of `steps` steps (the formula of schedule.lr_at)."""
    return steps - max(1, int(round(decay_fraction * steps)))


def plan(st: Study) -> list[PlannedRun]:
    """Every run of the study in training order (a stable run before its branches)."""
    budgets, sc = st.budgets(), st.study
    runs: list[PlannedRun] = []
    for model in st.models():
        for seed in sc.seeds:
            if sc.mode == "full":
                for b in budgets:
                    runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}", model, seed, b, "full",
                                           {"steps": b}))
                continue
            top = budgets[-1]
            starts = sorted({branch_start(b, sc.decay_fraction) for b in budgets[:-1]})
            runs.append(PlannedRun(f"{model}_b{top:07d}_s{seed}", model, seed, top, "stable",
                                   {"steps": top, "schedule": "wsd", "decay_fraction": sc.decay_fraction,
                                    "extra_ckpt_steps": starts, "keep_state_steps": starts}))
            stable = runs[-1].name
            for b in budgets[:-1]:
                runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}", model, seed, b, "branch",
                                       {"steps": b, "schedule": "wsd", "decay_fraction": sc.decay_fraction},
                                       parent=stable))
            for b in sc.compare_full_steps:
                runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}_full", model, seed, b, "compare",
                                       {"steps": b}))
    return runs


# ----------------------------------------------------------------------------- shared inputs


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy across file systems) every file of src into dst."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and not f.name.startswith("."):
            target = dst / f.name
            if target.exists():
                continue
            try:
                os.link(f, target)
            except OSError:
                shutil.copy2(f, target)


def prepare_shared(root: Path, st: Study, progress: bool) -> dict:
    """Build corpus + tokens once in STUDY_DIR/shared and the traced inputs (n_seqs, seq_len + 1)."""
    cfg = st.base_config
    shared = RunDir(root / "shared")
    build_corpus(shared.root, cfg.corpus, progress=progress)
    meta = tokenize(shared.root, cfg.tokens, progress=progress)
    seq_len = cfg.trace.seq_len or cfg.train.seq_len
    seed = cfg.trace.seed if cfg.trace.seed >= 0 else cfg.seed
    vstream = read_npy(shared.token_stream("val"), mmap=True)
    offs = val_offsets(seed, len(vstream), cfg.trace.n_seqs, seq_len)
    inputs = np.asarray(vstream[offs[:, None] + np.arange(seq_len + 1)[None, :]], dtype=np.int64)
    if not shared.trace_inputs.is_file() or not np.array_equal(read_npy(shared.trace_inputs), inputs):
        write_npy(shared.trace_inputs, inputs.astype(np.int32))
    return {"tokenizer": _digest(shared.tokenizer), "val": _digest(shared.token_stream("val")),
            "vocab_size": meta["vocab_size"], "seq_len": seq_len, "trace_seed": seed,
            "n_seqs": int(inputs.shape[0]), "n_tok": int(inputs.shape[0] * seq_len)}


def seed_run(root: Path, name: str) -> RunDir:
    """A new run directory whose corpus/ and tokens/ are the shared ones (their stages marked done)."""
    shared, run = RunDir(root / "shared"), RunDir(root / "runs" / name)
    if not run.manifest.is_file():
        _link_tree(shared.corpus_dir, run.corpus_dir)
        _link_tree(shared.tokens_dir, run.tokens_dir)
        m = load_manifest(shared)
        m["stages"] = {k: v for k, v in m["stages"].items() if k in ("corpus", "tokens")}
        write_json(run.manifest, m)
    return run


def check_same_inputs(root: Path, names: list[str], sig: dict) -> None:
    """Refuse runs whose tokenizer or validation tokens differ from the shared ones."""
    bad_tok, bad_val = [], []
    for name in names:
        run = RunDir(root / "runs" / name)
        if run.tokenizer.is_file() and _digest(run.tokenizer) != sig["tokenizer"]:
            bad_tok.append(name)
        if run.token_stream("val").is_file() and _digest(run.token_stream("val")) != sig["val"]:
            bad_val.append(name)
    if bad_tok:
        raise TokenizerError(f"runs {', '.join(bad_tok[:4])} use a different tokenizer than "
                             f"{root / 'shared'}", "a study needs one tokenizer: delete those run "
                             "directories (they are retrained) or use a new --out")
    if bad_val:
        raise DataError(f"runs {', '.join(bad_val[:4])} have a different validation set than "
                        f"{root / 'shared'}", "delete those run directories or use a new --out")


# ----------------------------------------------------------------------------- final losses


def final_losses(root: Path, name: str, inputs: np.ndarray, cfg, progress: bool = False) -> np.ndarray:
    """Per-token loss (n_tok,) of a run's final checkpoint on the shared inputs; cached in
    STUDY_DIR/finals/<name>.npy."""
    import torch
    from transformers import AutoModelForCausalLM

    out = root / "finals" / f"{name}.npy"
    run = RunDir(root / "runs" / name)
    step = run.ckpt_steps()[-1]
    if out.is_file():
        arr = read_npy(out)
        if arr.shape == (inputs.shape[0] * (inputs.shape[1] - 1),):
            return arr
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


# ----------------------------------------------------------------------------- axes


def write_axis(root: Path, name: str, column: str, x: np.ndarray, loss_kn: np.ndarray,
               token_cols: dict, extra_meta: dict) -> RunDir:
    """A run-like directory STUDY_DIR/axes/<name>/ with trace/{loss.npy, axis.parquet, tokens.parquet,
    meta.json} (CONTRACT.md), so fit() and spectrum() run on it unchanged."""
    ax = RunDir(root / "axes" / name)
    for sub in (ax.fit_dir, ax.spectrum_dir):  # stale results of a previous grid
        shutil.rmtree(sub, ignore_errors=True)
    write_npy(ax.trace_loss, np.ascontiguousarray(loss_kn, dtype=np.float32))
    write_parquet(ax.trace_axis, {column: np.asarray(x, np.int64)})
    write_parquet(ax.trace_tokens, token_cols)
    write_json(ax.trace_meta, {"n_tok": int(loss_kn.shape[1]), "n_ckpt": int(loss_kn.shape[0]),
                               "axes": [column], "source": "study", **extra_meta})
    return ax


def analyze_axis(ax: RunDir, column: str, axis_name: str, cfg, progress: bool) -> dict:
    """fit + spectrum along `column`, and losses.npz with axis_name D or M."""
    fcfg = dataclasses.replace(cfg.fit, axis=column, extra_axes=[])
    fsum = fit(ax, fcfg, progress=progress)
    ssum = spectrum(ax, cfg.spectrum, progress=progress)
    export_npz(ax.root, ax.root / "losses.npz", axis=column, axis_name=axis_name)
    keys = ("reconstruction_r2", "reconstruction_r2_heldout", "mean_rel_error", "loss_r2",
            "event_share", "alpha_measured", "alpha_spectrum", "n_events", "n_ckpt")
    return {k: ssum.get(k) for k in keys} | {"median_fit_r2": fsum.get("median_r2"),
                                              "sigmoid_share": fsum.get("sigmoid_share")}


# ----------------------------------------------------------------------------- the stage


def study(root: str | Path, st: Study, *, progress: bool = True, only: str | None = None) -> dict:
    """Run (or resume) the whole study in `root`; returns study.json's contents. A run that fails
    with a TokenclockError is recorded as failed and the rest go on.

    `only` splits a study over a job array: "prepare" builds the shared corpus, tokens and traced
    inputs and stops; an integer K trains the runs of the K-th model (its stable run and branches,
    every seed) and stops. A final call without `only` skips finished runs and builds the axes."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg0 = st.base_config
    sig = prepare_shared(root, st, progress)
    if only == "prepare":
        return {"shared": sig}
    runs = plan(st)
    if only is not None:
        models = st.models()
        if not (only.isdigit() and int(only) < len(models)):
            raise ConfigError(f"--only {only!r} is neither 'prepare' nor a model index 0..{len(models) - 1}",
                              "pass the job array index, e.g. --only $SLURM_ARRAY_TASK_ID")
        runs = [r for r in runs if r.model == models[int(only)]]
    check_same_inputs(root, [r.name for r in runs], sig)
    inputs = read_npy(RunDir(root / "shared").trace_inputs).astype(np.int64)
    per_step = cfg0.train.batch_size * cfg0.train.seq_len
    status: dict[str, dict] = {}
    manifest = {"config": {"study": dataclasses.asdict(st.study), "base": st.base}, "shared": sig,
                "runs": status, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for r in runs:
        rec = {"model": r.model, "seed": r.seed, "steps": r.steps, "tokens_seen": r.steps * per_step,
               "kind": r.kind, "parent": r.parent, "n_params": preset_params(r.model)}
        status[r.name] = rec
        run = seed_run(root, r.name)
        if r.parent is not None and status.get(r.parent, {}).get("status") != "done":
            rec.update(status="skipped", error=f"its stable run {r.parent} did not finish")
            continue
        over = dict(r.train)
        if r.parent is not None:  # relative to the study directory, so the study can be moved
            start = RunDir(root / "runs" / r.parent).ckpt(branch_start(r.steps, st.study.decay_fraction))
            over["init_from"] = start.relative_to(root).as_posix()
        was_done = stage_status(run, "train") == "done"
        t_run = time.time()
        try:
            cfg = st.run_config(r.seed, r.model, over)
            summ = pipeline.train(run.root, cfg, progress=progress, init_root=root)
            check_same_inputs(root, [r.name], sig)
            loss = final_losses(root, r.name, inputs, cfg)
        except TokenclockError as e:
            rec.update(status="failed", error=str(e).splitlines()[0], error_type=type(e).__name__)
            print(f"tokenclock: error: run {r.name}: {rec['error']}", file=sys.stderr)
            continue
        rec.update(status="done", cached=was_done, seconds=round(time.time() - t_run, 2),
                   train_seconds=(load_manifest(run)["stages"]["train"].get("seconds")),
                   n_params=int(summ.get("n_params", rec["n_params"])),
                   final_val_loss=summ.get("final_val_loss"), final_trace_loss=float(np.mean(loss)))
        if only is None:
            write_json(root / "study.json", manifest)
    if only is not None:
        return manifest

    # D and M axes from the good runs (per-token losses averaged over seeds)
    tok = load_tokenizer(RunDir(root / "shared").tokenizer)
    counts_path = RunDir(root / "shared").token_counts
    counts = read_npy(counts_path) if counts_path.is_file() else None
    token_cols = token_table(tok, inputs, counts, cfg0.trace.context_tokens)
    good = {n: s for n, s in status.items() if s.get("status") == "done" and s["kind"] != "compare"}

    def mean_loss(model: str, steps: int):
        names = [n for n, s in good.items() if s["model"] == model and s["steps"] == steps]
        if not names:
            return None
        return np.mean([read_npy(root / "finals" / f"{n}.npy") for n in names], axis=0)

    axes: dict[str, dict] = {}
    n_params = {m: next((s["n_params"] for s in good.values() if s["model"] == m), preset_params(m))
                for m in st.models()}
    for kind, keys, others in (("D", st.models(), st.budgets()), ("M", st.budgets(), st.models())):
        for key in keys:
            name = f"D_{key}" if kind == "D" else f"M_{key:07d}"
            pts = [(o, mean_loss(key, o) if kind == "D" else mean_loss(o, key)) for o in others]
            pts = [(o, v) for o, v in pts if v is not None]
            if len(pts) < MIN_POINTS:
                axes[name] = {"status": "skipped", "n_points": len(pts),
                              "error": f"{len(pts)} finished runs on this axis; fitting needs {MIN_POINTS}"}
                continue
            column = "tokens_seen" if kind == "D" else "n_params"
            x = np.array([o * per_step if kind == "D" else n_params[o] for o, _ in pts])
            order = np.argsort(x)
            ax = write_axis(root, name, column, x[order], np.stack([pts[i][1] for i in order]),
                            token_cols, {"vocab_size": tok.get_vocab_size(), "axis_name": kind,
                                         "fixed": key, "seeds": list(st.study.seeds)})
            try:
                axes[name] = {"status": "done", "axis": kind, "column": column, "fixed": key,
                              "x": x[order].tolist(), **analyze_axis(ax, column, kind, cfg0, progress)}
            except TokenclockError as e:
                axes[name] = {"status": "failed", "error": str(e).splitlines()[0]}
    manifest["axes"] = axes
    if not any(a["status"] == "done" for a in axes.values()):
        write_json(root / "study.json", manifest)
        raise DataError("no D or M axis has 4 finished runs", "fix the failed runs (see study.json) "
                        "or add budgets/models, then rerun the same command")

    # T axis: the densest-checkpointed run of the largest model (the stable / longest run)
    manifest["T"] = _t_axis(root, st, good, cfg0, sig, progress)
    manifest["summary"] = _summary(axes, manifest["T"])
    manifest["branch_vs_full"] = _branch_vs_full(status)
    # the classical baseline

    fin = [s for s in good.values()]
    try:
        ch = fit_chinchilla([s["n_params"] for s in fin], [s["tokens_seen"] for s in fin],
                            [s["final_trace_loss"] for s in fin], n_boot=st.study.bootstrap)
        ch["loss"] = "mean per-token loss of the final checkpoint on the shared traced tokens (nats)"
        ch["n"] = "non-embedding parameters"
        ch["D"] = "tokens seen"
    except TokenclockError as e:
        ch = {"status": "failed", "error": str(e).splitlines()[0]}
    write_json(root / "chinchilla.json", ch)
    manifest["chinchilla"] = {k: ch.get(k) for k in ("E", "A", "alpha", "B", "beta", "r2_log", "at_bound")}
    manifest["seconds"] = round(time.time() - t0, 2)
    manifest["n_failed"] = sum(s.get("status") == "failed" for s in status.values())
    write_json(root / "study.json", manifest)

    study_report(root)
    return manifest


def _t_axis(root: Path, st: Study, good: dict, cfg0, sig: dict, progress: bool) -> dict:
    cands = [(s["n_params"], s["steps"], n) for n, s in good.items() if s["kind"] in ("full", "stable")]
    if not cands:
        return {"status": "skipped", "error": "no finished full or stable run"}
    name = max(cands)[2]
    run = RunDir(root / "runs" / name)
    try:
        tcfg = dataclasses.replace(cfg0.trace, seed=sig["trace_seed"], seq_len=sig["seq_len"])
        if stage_status(run, "spectrum") != "done":
            trace(run.root, tcfg, progress=progress)
            fit(run, dataclasses.replace(cfg0.fit, axis="step"), progress=progress)
            spectrum(run, cfg0.spectrum, progress=progress)
        s = read_json(run.spectrum_summary)
    except TokenclockError as e:
        return {"status": "failed", "run": name, "error": str(e).splitlines()[0]}
    keys = ("reconstruction_r2", "reconstruction_r2_heldout", "alpha_measured", "alpha_spectrum", "n_ckpt")
    return {"status": "done", "run": name, "column": "step", **{k: s.get(k) for k in keys}}


def _summary(axes: dict, t: dict) -> dict:
    out = {}
    for kind in ("D", "M"):
        done = [a for a in axes.values() if a.get("axis") == kind and a["status"] == "done"]
        r2 = [a["reconstruction_r2"] for a in done if a.get("reconstruction_r2") is not None]
        am = [a["alpha_measured"] for a in done if a.get("alpha_measured") is not None]
        asp = [a["alpha_spectrum"] for a in done if a.get("alpha_spectrum") is not None]
        out[kind] = {"n_axes": len(done), "reconstruction_r2_mean": float(np.mean(r2)) if r2 else None,
                     "reconstruction_r2_min": float(np.min(r2)) if r2 else None,
                     "alpha_measured_median": float(np.median(am)) if am else None,
                     "alpha_spectrum_median": float(np.median(asp)) if asp else None}
    out["T"] = {k: t.get(k) for k in ("reconstruction_r2", "alpha_measured", "alpha_spectrum")}
    return out


def _branch_vs_full(status: dict) -> list[dict]:
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
