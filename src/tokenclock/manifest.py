"""A run's manifest (RUN/manifest.json: per-stage status, config, inputs, seconds, versions, git
commit) and the stage lifecycle (`RunDir.stage`, which takes the lock of lock.py). File names come
from the run directory object passed in (rundir.RunDir: its manifest, lock and stage_key).
"""
from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from tokenclock.artifacts import read_json, write_json
from tokenclock.errors import RunDirError
from tokenclock.lock import run_lock

SCHEMA_VERSION = 1


class RunDir(Protocol):
    """What the manifest needs of a run directory (rundir.RunDir has it)."""

    root: Path

    @property
    def manifest(self) -> Path: ...

    @property
    def lock(self) -> Path: ...

    def stage_key(self, stage: str) -> str: ...


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
