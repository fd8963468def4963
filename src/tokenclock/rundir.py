"""Directory layouts: the one module that knows file names (RunDir, the reshape pool PoolDir,
ScheduleDir, StudyDir) and the weight series (raw, avg) with every name derived from it. The
manifest and the stage lifecycle (`RunDir.stage`) are manifest.py's.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenclock.errors import RunDirError
from tokenclock.manifest import (
    Stage,
)

# ----------------------------------------------------------------------------- layout


# ----------------------------------------------------------------------------- the weight series

RAW, AVG = "raw", "avg"
WEIGHT_SERIES = (RAW, AVG)
"""The weight series, raw first: raw (the trained weights), avg (the averaged weights train.avg
keeps). Their one owner: every folder suffix, key, CLI choice, label and hint derives from here."""
SERIES_LABELS = {RAW: "raw weights", AVG: "averaged weights"}
WEIGHTS_HELP = "weight series: raw (default) or avg (the averaged weights of train.avg)"


def check_series(weights: str | None, setting: str = "weight series", error: type = RunDirError) -> str:
    """`weights` (None -> raw) if it names a weight series, else `error` naming `setting`."""
    weights = RAW if weights is None else weights
    if weights not in WEIGHT_SERIES:
        raise error(f"unknown {setting} '{weights}'", "use " + " or ".join(WEIGHT_SERIES))
    return weights


def series_suffix(weights: str | None) -> str:
    """'' for the raw series, '_avg' for the averaged one: the suffix of its folders and keys."""
    weights = check_series(weights)
    return "" if weights == RAW else "_" + weights


def series_key(name: str, weights: str | None) -> str:
    """A folder, manifest or study key of one series: series_key("axes", "avg") == "axes_avg"."""
    return name + series_suffix(weights)


def series_flag(weights: str | None) -> str:
    """The CLI flag that selects `weights` ('' for raw, ' --weights avg'), for command hints."""
    return "" if check_series(weights) == RAW else f" --weights {weights}"

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
    weights: str = RAW

    def __init__(self, root: "str | Path | RunDir", weights: str | None = None):
        if isinstance(root, RunDir):
            weights = root.weights if weights is None else weights
            root = root.root
        weights = check_series(weights)
        object.__setattr__(self, "root", Path(root))
        object.__setattr__(self, "weights", weights)

    def series(self, weights: str) -> "RunDir":
        """The same run directory seen through another weight series (raw | avg)."""
        return type(self)(self.root, weights)

    @property
    def suffix(self) -> str:
        """'' for the raw series, '_avg' for the averaged one (folder and manifest names)."""
        return series_suffix(self.weights)

    @property
    def label(self) -> str:
        """'raw weights' or 'averaged weights', for captions and headings."""
        return SERIES_LABELS[self.weights]

    def command(self, stage: str) -> str:
        """The command that writes `stage` here, for error hints: `tokenclock fit RUN --weights avg`."""
        return f"tokenclock {stage} {self.root}" + series_flag(self.weights)

    def rel(self, path: str | Path) -> str:
        """`path` relative to the run directory, with forward slashes (trace_avg/loss.npy)."""
        return relative(path, self.root)

    def stage_of(self, path: str | Path) -> str:
        """The stage that writes an artifact of this run (trace_avg/loss.npy -> trace; ckpt/ -> train)."""
        top = Path(self.rel(path)).parts[0]
        folders = {self.trace_dir.name: "trace", self.fit_dir.name: "fit", self.spectrum_dir.name: "spectrum",
                   self.report_dir.name: "report", self.ckpt_dir.name: "train", self.weights_dir.name: "train",
                   self.tokens_dir.name: "tokenize", self.corpus_dir.name: "corpus"}
        return folders.get(top, top)

    def stage_key(self, stage: str) -> str:
        """The manifest entry of `stage` in this series (trace, fit, spectrum, report: trace_avg ...)."""
        return stage + self.suffix if stage in SERIES_STAGES else stage

    # top level
    @property
    def manifest(self) -> Path: return self.root / "manifest.json"
    @property
    def lock(self) -> Path: return self.root / ".lock"
    @property
    def losses_npz(self) -> Path:
        """losses.npz (the paper's format) at the top of a run-like folder: a study axis's copy, or
        one a user placed there to import (`tokenclock fit --npz`)."""
        return self.root / "losses.npz"
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
        """AdamW state of the newest checkpoint (safetensors; train_state.pt in runs before 0.2)."""
        legacy = self.ckpt_dir / "train_state.pt"
        return legacy if legacy.is_file() else self.ckpt_dir / "train_state.safetensors"
    @property
    def train_log(self) -> Path: return self.ckpt_dir / "train_log.parquet"
    @property
    def ckpt_staging(self) -> Path:
        """ckpt/.zoom/: a replay zoom's checkpoints until the replay matches the next one bit for bit."""
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
    def trace_weight_hashes(self) -> Path: return self.trace_dir / "weight_sha256.json"
    @property
    def trace_track(self) -> Path:  # the in-loop tracker's record (signature, rows done, cum lr)
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
        """Steps of complete checkpoints on disk (folders are written under a temporary name)."""
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


def relative(path: str | Path, root: Path) -> str:
    """`path` relative to `root` where it is inside it (else as given), with forward slashes."""
    p = Path(path)
    return (p.relative_to(root) if p.is_relative_to(root) else p).as_posix()


def ckpt_sidecar(step_dir: str | Path) -> Path:
    """tokenclock's metadata file inside any checkpoint folder (its own run's or train.init_from's)."""
    return Path(step_dir) / "tokenclock.json"


def avg_sibling(step_dir: str | Path) -> Path:
    """The averaged weights saved with a checkpoint folder: RUN/ckpt/step_X -> RUN/ckpt_avg/step_X."""
    p = Path(step_dir)
    return p.parent.parent / series_key(p.parent.name, AVG) / p.name


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
    def loss_weights(self) -> Path:
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


@dataclass(frozen=True)
class StudyDir:
    """Names of everything inside one study directory (`tokenclock study CONFIG --out STUDY_DIR`).
    Runs name each other relative to it (train.init_from), so a study directory can be moved."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def rel(self, path: str | Path) -> str:
        """`path` relative to the study directory, with forward slashes (axes/D_llama-1m/)."""
        return relative(path, self.root)

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
    def final_losses(self, name: str, weights: str = RAW) -> Path:
        """float32 (n_tok,) per-token loss of run `name`'s final checkpoint on the shared inputs:
        finals/ (raw weights) or finals_avg/ (its averaged weights, ckpt_avg/)."""
        return self.root / series_key("finals", weights) / f"{name}.npy"
    def axes_dir(self, weights: str = RAW) -> Path: return self.root / series_key("axes", weights)
    def axis(self, name: str, weights: str = RAW) -> RunDir:
        """axes/<name>/ (D_<model> or M_<budget>; axes_avg/ from the averaged finals): run-like,
        trace/ fit/ spectrum/ over the runs."""
        return RunDir(self.axes_dir(weights) / name)
    def axis_npz(self, name: str, weights: str = RAW) -> Path:
        """The axis in the paper's losses.npz format, beside its run-like folders."""
        return self.axis(name, weights).losses_npz
    @property
    def report_dir(self) -> Path: return self.root / "report"
    @property
    def report_html(self) -> Path: return self.report_dir / "index.html"
    def report_figure(self, name: str) -> Path: return self.report_dir / name




# ----------------------------------------------------------------------------- manifest















