"""Directory layouts: the one module that knows file names (RunDir, the reshape pool PoolDir,
ScheduleDir, StudyDir), the manifest (RUN/manifest.json: per-stage status, config, inputs, seconds,
versions, git commit) and the stage lifecycle (`RunDir.stage`, which takes the lock of lock.py).
"""
from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenclock.artifacts import read_json, write_json
from tokenclock.errors import RunDirError
from tokenclock.lock import run_lock

SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- layout


WEIGHT_SERIES = ("raw", "avg")
# stages whose artifacts belong to one weight series: the averaged series keeps its own
# ckpt_avg/, trace_avg/, fit_avg/, spectrum_avg/, report_avg/ and manifest entries <stage>_avg
SERIES_STAGES = ("trace", "fit", "spectrum", "report")


@dataclass(frozen=True)
class RunDir:
    """Names of everything inside one run directory, for one weight series: `weights="raw"` (the
    trained weights: ckpt/, trace/, fit/, spectrum/, report/) or `weights="avg"` (the averaged
    weights train.avg keeps: ckpt_avg/, trace_avg/, fit_avg/, spectrum_avg/, report_avg/). Both
    series share everything else (corpus, tokens, ckpt/index.parquet, the resume state, the
    manifest). `RunDir(run)` of a RunDir keeps its series."""

    root: Path
    weights: str = "raw"

    def __init__(self, root: "str | Path | RunDir", weights: str | None = None):
        if isinstance(root, RunDir):
            weights = root.weights if weights is None else weights
            root = root.root
        weights = weights or "raw"
        if weights not in WEIGHT_SERIES:
            raise RunDirError(f"unknown weight series '{weights}'", "use raw or avg")
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "weights", weights)

    def series(self, weights: str) -> "RunDir":
        """The same run directory seen through another weight series (raw | avg)."""
        return type(self)(self.root, weights)

    @property
    def suffix(self) -> str:
        """'' for the raw series, '_avg' for the averaged one (folder and manifest names)."""
        return "" if self.weights == "raw" else "_" + self.weights

    def command(self, stage: str) -> str:
        """The command that writes `stage` here, for error hints: `tokenclock fit RUN --weights avg`."""
        return f"tokenclock {stage} {self.root}" + (f" --weights {self.weights}" if self.weights != "raw" else "")

    def stage_key(self, stage: str) -> str:
        """The manifest entry of `stage` in this series (trace, fit, spectrum, report: trace_avg ...)."""
        return stage + self.suffix if stage in SERIES_STAGES else stage

    # top level
    @property
    def manifest(self) -> Path: return self.root / "manifest.json"
    @property
    def lock(self) -> Path: return self.root / ".lock"
    # corpus/
    @property
    def corpus_dir(self) -> Path: return self.root / "corpus"
    def corpus_split(self, split: str) -> Path: return self.corpus_dir / f"{split}.parquet"
    @property
    def corpus_stats(self) -> Path: return self.corpus_dir / "stats.json"
    # tokens/
    @property
    def tokens_dir(self) -> Path: return self.root / "tokens"
    @property
    def tokenizer(self) -> Path: return self.tokens_dir / "tokenizer.json"
    def token_stream(self, split: str) -> Path: return self.tokens_dir / f"{split}.npy"
    def doc_offsets(self, split: str) -> Path: return self.tokens_dir / f"{split}_offsets.npy"
    @property
    def tokens_meta(self) -> Path: return self.tokens_dir / "meta.json"
    @property
    def token_counts(self) -> Path: return self.tokens_dir / "train_counts.npy"
    # ckpt/
    @property
    def ckpt_dir(self) -> Path:
        """ckpt/: the raw weights' folders, index.parquet, train_log.parquet and the resume state."""
        return self.root / "ckpt"
    @property
    def weights_dir(self) -> Path:
        """Where this series' checkpoint folders are: ckpt/ (raw) or ckpt_avg/ (averaged weights)."""
        return self.root / ("ckpt" + self.suffix)
    def ckpt(self, step: int) -> Path: return self.weights_dir / f"step_{step:07d}"
    def ckpt_sidecar(self, step: int) -> Path:
        """step, tokens_seen, lr, cum_lr and losses of one checkpoint, beside its weights."""
        return ckpt_sidecar(self.ckpt(step))
    def ckpt_optimizer(self, step: int) -> Path:
        """AdamW state kept with checkpoint `step` (train.keep_state_steps), for branches."""
        return ckpt_optimizer(self.ckpt(step))
    @property
    def ckpt_index(self) -> Path: return self.ckpt_dir / "index.parquet"
    @property
    def train_state(self) -> Path:
        """AdamW state of the newest checkpoint (safetensors). Runs written before 0.2 named it
        train_state.pt (also safetensors inside); such a run keeps using its old name."""
        legacy = self.ckpt_dir / "train_state.pt"
        return legacy if legacy.is_file() else self.ckpt_dir / "train_state.safetensors"
    @property
    def train_log(self) -> Path: return self.ckpt_dir / "train_log.parquet"
    @property
    def ckpt_staging(self) -> Path:
        """ckpt/.zoom/: checkpoints a replay zoom wrote and has not yet matched (they move into
        ckpt/ once the replay reaches the next checkpoint of the series bit for bit)."""
        return self.ckpt_dir / ".zoom"
    def ckpt_staged(self, step: int) -> Path:
        return self.ckpt_staging / (f"step_{step:07d}" + self.suffix)
    # trace/
    @property
    def trace_dir(self) -> Path: return self.root / ("trace" + self.suffix)
    @property
    def trace_loss(self) -> Path: return self.trace_dir / "loss.npy"
    @property
    def trace_axis(self) -> Path: return self.trace_dir / "axis.parquet"
    @property
    def trace_tokens(self) -> Path: return self.trace_dir / "tokens.parquet"
    @property
    def trace_partial(self) -> Path:
        """loss.npy while it is being filled (a memmap; rows before progress.json's rows_done are final)."""
        return self.trace_dir / "loss.partial.npy"
    @property
    def trace_progress(self) -> Path: return self.trace_dir / "progress.json"
    @property
    def trace_inputs(self) -> Path: return self.trace_dir / "inputs.npy"
    @property
    def trace_meta(self) -> Path: return self.trace_dir / "meta.json"
    @property
    def trace_track(self) -> Path:
        """track.json: the in-loop tracker's record (its signature, the rows loss.npy holds, the
        cumulative lr); present only in a trace that `tokenclock.track` writes."""
        return self.trace_dir / "track.json"
    # fit/
    @property
    def fit_dir(self) -> Path: return self.root / ("fit" + self.suffix)
    @property
    def fit_events(self) -> Path: return self.fit_clock_events()
    @property
    def fit_tokens(self) -> Path: return self.fit_clock_tokens()
    @property
    def fit_summary(self) -> Path: return self.fit_clock_summary()
    def fit_clock_dir(self, axis: str | None = None) -> Path:
        """RUN/fit/ for the primary clock (axis None), RUN/fit/<axis>/ for another clock."""
        return self.fit_dir if axis is None else self.fit_dir / axis
    def fit_clock_events(self, axis: str | None = None) -> Path:
        """One row per event (tok_idx, a, mu, width, resolved: width >= the local checkpoint spacing)
        of a clock's fit (axis None: the primary)."""
        return self.fit_clock_dir(axis) / "events.parquet"
    def fit_clock_tokens(self, axis: str | None = None) -> Path:
        """One row per token (b, c, n_events, r2, class, model, ...) of a clock's fit."""
        return self.fit_clock_dir(axis) / "tokens.parquet"
    def fit_clock_summary(self, axis: str | None = None) -> Path:
        return self.fit_clock_dir(axis) / "summary.json"
    def fit_clocks(self) -> list[str]:
        """The other clocks fitted into RUN/fit/<axis>/ (folders with an events.parquet), sorted."""
        if not self.fit_dir.is_dir():
            return []
        return [p.name for p in sorted(self.fit_dir.iterdir())
                if p.is_dir() and self.fit_clock_events(p.name).is_file()]
    # spectrum/
    @property
    def spectrum_dir(self) -> Path: return self.root / ("spectrum" + self.suffix)
    @property
    def spectrum_summary(self) -> Path: return self.spectrum_dir / "summary.json"
    def spectrum_curve(self, axis: str | None = None) -> Path:
        """Measured vs reconstructed -dL/du: curve.parquet (primary clock) or <axis>_curve.parquet."""
        return self.spectrum_dir / ("curve.parquet" if axis is None else f"{axis}_curve.parquet")
    def spectrum_density(self, axis: str | None = None) -> Path:
        return self.spectrum_dir / ("density.parquet" if axis is None else f"{axis}_density.parquet")
    @property
    def spectrum_replicate(self) -> Path:
        """The replicate ceiling against another run (spectrum --replicate RUN2)."""
        return self.spectrum_dir / "replicate.json"
    @property
    def spectrum_replicate_curve(self) -> Path:
        """Both runs' measured and reconstructed -dL/du on their common checkpoints."""
        return self.spectrum_dir / "replicate_series.parquet"
    def spectrum_clocks(self) -> list[str]:
        """The other clocks with an <axis>_curve.parquet in RUN/spectrum/, in file-name order."""
        if not self.spectrum_dir.is_dir():
            return []
        return [p.name[: -len("_curve.parquet")] for p in sorted(self.spectrum_dir.glob("*_curve.parquet"))]
    # report/
    @property
    def report_dir(self) -> Path: return self.root / ("report" + self.suffix)
    @property
    def report_html(self) -> Path: return self.report_dir / "index.html"
    @property
    def report_summary(self) -> Path:
        """The report's headline numbers (report --out writes index.html and this name elsewhere)."""
        return self.report_dir / "summary.json"
    # reshape/: the reference's traced pool of training windows
    @property
    def reshape_pool(self) -> "PoolDir": return PoolDir(self.root / "reshape" / "pool")

    def ckpt_steps(self) -> list[int]:
        """Steps of complete checkpoints on disk (a checkpoint is complete when its folder exists;
        folders are written under a temporary name and renamed)."""
        if not self.weights_dir.is_dir():
            return []
        steps = []
        for p in self.weights_dir.iterdir():
            if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
                steps.append(int(p.name[5:]))
        return sorted(steps)

    def stage(self, name: str, config: dict | None = None, *, inputs: dict | None = None,
              writer: bool = True, **extra: Any) -> "Stage":
        """The lifecycle of one stage, as a context manager: take RUN/.lock, record `name` as
        running (with its config and inputs), and on leaving record it done with its seconds and
        whatever the body passed to `Stage.record`, or failed with the error's first line (the
        error is raised again). `writer=False` (the other ranks under torchrun) records nothing
        and takes no lock."""
        return Stage(self, name, config, inputs, writer, extra)


def ckpt_sidecar(step_dir: str | Path) -> Path:
    """tokenclock's metadata file inside any checkpoint folder (its own run's or train.init_from's)."""
    return Path(step_dir) / "tokenclock.json"


def avg_sibling(step_dir: str | Path) -> Path:
    """The averaged weights saved with a checkpoint folder: RUN/ckpt/step_X -> RUN/ckpt_avg/step_X."""
    p = Path(step_dir)
    return p.parent.parent / (p.parent.name + "_avg") / p.name


def ckpt_optimizer(step_dir: str | Path) -> Path:
    """The AdamW state (safetensors) a checkpoint folder keeps when train.keep_state_steps names it."""
    return Path(step_dir) / "optimizer.safetensors"


@dataclass(frozen=True)
class ScheduleDir:
    """Names inside a data schedule folder written by `tokenclock reshape` (train.data_schedule)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def offsets(self) -> Path:
        """int64 (steps, batch_size) start offsets into RUN/tokens/train.npy."""
        return self.root / "offsets.npy"
    @property
    def weights(self) -> Path:
        """float16 (steps, batch_size, seq_len) per-token loss weights (token-level strategies only)."""
        return self.root / "weights.npy"
    @property
    def profiles(self) -> Path: return self.root / "profiles.parquet"
    @property
    def meta(self) -> Path: return self.root / "meta.json"


@dataclass(frozen=True)
class PoolDir(RunDir):
    """REF/reshape/pool/: the training windows `tokenclock reshape` traces through a reference run's
    checkpoints. Run-like (manifest.json, trace/) plus the names below."""

    @property
    def info(self) -> Path:
        """pool.json: the signature (pool, seq_len, checkpoint steps) the trace was made for."""
        return self.root / "pool.json"
    @property
    def offsets(self) -> Path:
        """int64 (pool_size,) start offsets of the pool's windows in REF/tokens/train.npy."""
        return self.trace_dir / "offsets.npy"


def _suffix(weights: str) -> str:
    if weights not in WEIGHT_SERIES:
        raise RunDirError(f"unknown weight series '{weights}'", "use raw or avg")
    return "" if weights == "raw" else "_" + weights


@dataclass(frozen=True)
class StudyDir:
    """Names of everything inside one study directory (`tokenclock study CONFIG --out STUDY_DIR`).
    Runs name each other relative to it (train.init_from), so a study directory can be moved."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest(self) -> Path:
        """study.json: the grid's config, the shared inputs' signature, every run's status, the
        axes, the T axis, the summary and the Chinchilla parameters."""
        return self.root / "study.json"
    @property
    def chinchilla(self) -> Path: return self.root / "chinchilla.json"
    @property
    def shared(self) -> RunDir:
        """corpus/, tokens/ and trace/inputs.npy shared by every run (a run directory's layout)."""
        return RunDir(self.root / "shared")
    @property
    def runs_dir(self) -> Path: return self.root / "runs"
    def run(self, name: str) -> RunDir: return RunDir(self.runs_dir / name)
    def final_losses(self, name: str, weights: str = "raw") -> Path:
        """float32 (n_tok,) per-token loss of run `name`'s final checkpoint on the shared inputs:
        finals/ (raw weights) or finals_avg/ (its averaged weights, ckpt_avg/)."""
        return self.root / f"finals{_suffix(weights)}" / f"{name}.npy"
    def axes_dir(self, weights: str = "raw") -> Path: return self.root / f"axes{_suffix(weights)}"
    def axis(self, name: str, weights: str = "raw") -> RunDir:
        """axes/<name>/ (D_<model> or M_<budget>; axes_avg/ from the averaged finals): run-like,
        trace/ fit/ spectrum/ over the runs."""
        return RunDir(self.axes_dir(weights) / name)
    def axis_npz(self, name: str, weights: str = "raw") -> Path:
        """The axis in the paper's losses.npz format, beside its run-like folders."""
        return self.axis(name, weights).root / "losses.npz"
    @property
    def report_dir(self) -> Path: return self.root / "report"
    @property
    def report_html(self) -> Path: return self.report_dir / "index.html"
    def report_figure(self, name: str) -> Path: return self.report_dir / name


class Stage:
    """One stage's entry in the manifest while it runs (see RunDir.stage)."""

    def __init__(self, run: RunDir, name: str, config: dict | None, inputs: dict | None,
                 writer: bool, extra: dict):
        self.run, self.name, self.config, self.inputs, self.writer = run, name, config, inputs, writer
        self.extra = dict(extra)  # recorded with 'running' and again with 'done'
        self.fields: dict[str, Any] = {}  # recorded with 'done'
        self._lock: contextlib.AbstractContextManager | None = None
        self._t0 = 0.0

    def record(self, **fields: Any) -> None:
        """Fields to store in the stage's manifest entry when it ends (summary=..., etc.)."""
        self.fields.update(fields)

    def note(self, **fields: Any) -> None:
        """Store fields in the manifest entry now (a failure keeps them; 'done' repeats them)."""
        self.extra.update(fields)
        if self.writer:
            update_stage(self.run, self.name, "running", **fields)

    @property
    def seconds(self) -> float:
        return time.time() - self._t0

    def __enter__(self) -> "Stage":
        self._t0 = time.time()
        if self.writer:
            self._lock = run_lock(self.run, self.name)
            self._lock.__enter__()
            try:
                update_stage(self.run, self.name, "running", config=self.config, inputs=self.inputs,
                             **self.extra)
            except BaseException as e:
                self._lock.__exit__(type(e), e, e.__traceback__)
                raise
        return self

    def __exit__(self, typ, err, tb) -> bool:
        if not self.writer:
            return False
        try:
            if err is None:
                update_stage(self.run, self.name, "done", config=self.config, inputs=self.inputs,
                             seconds=self.seconds, **self.extra, **self.fields)
            else:
                first = str(err).splitlines()[0] if str(err) else typ.__name__
                with contextlib.suppress(Exception):  # the stage's own error is the one to raise
                    update_stage(self.run, self.name, "failed", seconds=self.seconds, error=first)
        finally:
            self._lock.__exit__(typ, err, tb)
        return False


# ----------------------------------------------------------------------------- manifest


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tokenclock", "torch", "transformers", "tokenizers", "numpy", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def load_manifest(run: RunDir) -> dict:
    if run.manifest.is_file():
        m = read_json(run.manifest)
        if m.get("schema_version") != SCHEMA_VERSION:
            raise RunDirError(f"{run.manifest} has schema_version {m.get('schema_version')}, "
                              f"this tokenclock writes {SCHEMA_VERSION}",
                              "use a fresh --out directory")
        return m
    return {"schema_version": SCHEMA_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "stages": {}}


def update_stage(run: RunDir, stage: str, status: str, config: dict | None = None,
                 inputs: dict | None = None, seconds: float | None = None, **extra: Any) -> dict:
    """Record a stage's status ('running', 'done', 'failed') in manifest.json, atomically."""
    m = load_manifest(run)
    stage = run.stage_key(stage)
    entry = m["stages"].get(stage, {})
    entry.update({"status": status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if config is not None:
        entry["config"] = config
    if inputs is not None:
        entry["inputs"] = inputs
    if seconds is not None:
        entry["seconds"] = round(seconds, 3)
    entry.update(extra)
    m["stages"][stage] = entry
    m["versions"] = versions()
    m["git_commit"] = _git_commit()
    write_json(run.manifest, m)
    return m


def stage_status(run: RunDir, stage: str) -> str | None:
    if not run.manifest.is_file():
        return None
    return load_manifest(run)["stages"].get(run.stage_key(stage), {}).get("status")


def stage_config(run: RunDir, stage: str) -> dict | None:
    if not run.manifest.is_file():
        return None
    return load_manifest(run)["stages"].get(run.stage_key(stage), {}).get("config")



