"""Fixtures for the explorer's tests (imported by each test module: a second conftest.py would take
the name `conftest` from tests/conftest.py), all made from the session's tiny pipeline run: the run
itself, a copy with only its trace (no fit), its trace imported back from losses.npz (no token
text), and a shorter import (other validation tokens, so compare must refuse it)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokenclock.rundir import RunDir

__all__ = ["explore_dirs", "opened", "snapshot"]


def _snapshot(root: Path) -> dict[str, str]:
    """Path -> size, mtime and sha1 of every file under root (the explorer must change none)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = f"{st.st_size}:{st.st_mtime_ns}:{hashlib.sha1(p.read_bytes()).hexdigest()}"
    return out


@pytest.fixture(scope="session")
def snapshot():
    return _snapshot


@pytest.fixture(scope="session")
def explore_dirs(tiny_run, tmp_path_factory) -> dict[str, Path]:
    from tokenclock.pipeline import fit_npz
    from tokenclock.stages.trace.npz import export_npz

    root = tmp_path_factory.mktemp("explore")
    src = RunDir(tiny_run)
    trace_only = RunDir(root / "trace_only")
    shutil.copytree(src.trace_dir, trace_only.trace_dir)
    npz = export_npz(tiny_run, root / "losses.npz", axis="step")
    fit_npz(npz, root / "imported", progress=False)
    z = dict(np.load(npz))
    short = root / "short.npz"
    np.savez(short, **{**z, "loss_matrix": z["loss_matrix"][:500], "sample_id": z["sample_id"][:500],
                       "token_pos": z["token_pos"][:500]})
    fit_npz(short, root / "short", progress=False)
    return {"tiny": Path(tiny_run), "trace_only": trace_only.root, "imported": root / "imported",
            "short": root / "short"}


@pytest.fixture(scope="session")
def opened(explore_dirs):
    """The runs opened once: tiny, trace_only, imported, short (in that order)."""
    from tokenclock.explore.server import open_runs

    return open_runs([explore_dirs[k] for k in ("tiny", "trace_only", "imported", "short")], log=lambda *a: None)
