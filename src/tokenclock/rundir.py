"""The run directory: the one module that knows file names, plus atomic writers and the manifest.

Every artifact is written to a temporary name in the same folder, fsynced and renamed, so a
crash never leaves a file that looks complete. `manifest.json` records per-stage status.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import RunDirError

SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- atomic writers


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})",
                          "delete it and rerun the stage that writes it") from None


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def read_npy(path: str | Path, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise RunDirError(f"{path} is not a readable .npy file ({e})",
                          "delete it and rerun the stage that writes it") from None


def write_parquet(path: str | Path, columns: dict[str, Any], metadata: dict | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: (v if isinstance(v, (pa.Array, pa.ChunkedArray)) else np.asarray(v)
                          if not isinstance(v, list) else v) for k, v in columns.items()})
    if metadata:
        table = table.replace_schema_metadata({"tokenclock": json.dumps(metadata, default=_json_default)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read a parquet table into a dict of numpy arrays (strings become object arrays)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path} does not exist", "run the stage that writes it first")
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise RunDirError(f"{path} is not a readable parquet file ({type(e).__name__}: {e})".split("\n")[0],
                          "delete it and rerun the stage that writes it") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class RunDir:
    """Names of everything inside one run directory."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

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
    def ckpt_dir(self) -> Path: return self.root / "ckpt"
    def ckpt(self, step: int) -> Path: return self.ckpt_dir / f"step_{step:07d}"
    @property
    def ckpt_index(self) -> Path: return self.ckpt_dir / "index.parquet"
    @property
    def train_state(self) -> Path: return self.ckpt_dir / "train_state.pt"
    @property
    def train_log(self) -> Path: return self.ckpt_dir / "train_log.parquet"
    # trace/
    @property
    def trace_dir(self) -> Path: return self.root / "trace"
    @property
    def trace_loss(self) -> Path: return self.trace_dir / "loss.npy"
    @property
    def trace_axis(self) -> Path: return self.trace_dir / "axis.parquet"
    @property
    def trace_tokens(self) -> Path: return self.trace_dir / "tokens.parquet"
    @property
    def trace_progress(self) -> Path: return self.trace_dir / "progress.json"
    @property
    def trace_inputs(self) -> Path: return self.trace_dir / "inputs.npy"
    @property
    def trace_meta(self) -> Path: return self.trace_dir / "meta.json"
    # fit/
    @property
    def fit_dir(self) -> Path: return self.root / "fit"
    @property
    def fit_events(self) -> Path: return self.fit_dir / "events.parquet"
    @property
    def fit_tokens(self) -> Path: return self.fit_dir / "tokens.parquet"
    @property
    def fit_summary(self) -> Path: return self.fit_dir / "summary.json"
    def fit_clock_dir(self, axis: str | None = None) -> Path:
        """RUN/fit/ for the primary clock (axis None), RUN/fit/<axis>/ for another clock."""
        return self.fit_dir if axis is None else self.fit_dir / axis
    # spectrum/
    @property
    def spectrum_dir(self) -> Path: return self.root / "spectrum"
    @property
    def spectrum_summary(self) -> Path: return self.spectrum_dir / "summary.json"
    def spectrum_curve(self, axis: str | None = None) -> Path:
        """Measured vs reconstructed -dL/du: curve.parquet (primary clock) or <axis>_curve.parquet."""
        return self.spectrum_dir / ("curve.parquet" if axis is None else f"{axis}_curve.parquet")
    def spectrum_density(self, axis: str | None = None) -> Path:
        return self.spectrum_dir / ("density.parquet" if axis is None else f"{axis}_density.parquet")
    # report/
    @property
    def report_dir(self) -> Path: return self.root / "report"
    @property
    def report_html(self) -> Path: return self.report_dir / "index.html"

    def ckpt_steps(self) -> list[int]:
        """Steps of complete checkpoints on disk (a checkpoint is complete when its folder exists;
        folders are written under a temporary name and renamed)."""
        if not self.ckpt_dir.is_dir():
            return []
        steps = []
        for p in self.ckpt_dir.iterdir():
            if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
                steps.append(int(p.name[5:]))
        return sorted(steps)


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
    return load_manifest(run)["stages"].get(stage, {}).get("status")


def stage_config(run: RunDir, stage: str) -> dict | None:
    if not run.manifest.is_file():
        return None
    return load_manifest(run)["stages"].get(stage, {}).get("config")


# ----------------------------------------------------------------------------- one writer per run


@contextlib.contextmanager
def run_lock(run: RunDir, stage: str) -> Iterator[None]:
    """Hold `RUN/.lock` while a stage writes. A second process is refused with the holder's pid;
    a lock left by a dead process on this host is taken over."""
    run.root.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "stage": stage,
          "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(run.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(run.lock.read_text() or "{}")
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("pid") == os.getpid():
                yield  # re-entrant within one process (demo runs stages in sequence)
                return
            if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
                with contextlib.suppress(FileNotFoundError):
                    run.lock.unlink()  # stale: its process is gone
                continue
            raise RunDirError(f"{run.root} is in use by pid {holder.get('pid')} on "
                              f"{holder.get('host')} (stage {holder.get('stage')}, since "
                              f"{holder.get('since')})",
                              f"wait for it to finish, or delete {run.lock} if that process is gone")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                run.lock.unlink()
        return
    raise RunDirError(f"could not take the lock {run.lock}", "delete it and retry")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
