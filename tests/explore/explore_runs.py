"""Fixtures for the explorer's tests (imported by each test module: a second conftest.py would take
the name `conftest` from tests/conftest.py), all made from the session's tiny pipeline run: the run
itself, a copy with only its trace (no fit), its trace imported back from losses.npz (no token
text), and a shorter import (other validation tokens, so compare must refuse it)."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokenclock.rundir import RunDir

__all__ = ["explore_dirs", "opened", "snapshot", "state_dirs", "state_runs", "served", "browser", "CHROMIUM"]


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


def censor(src: Path, dst: Path, n_right: int = 40, n_left: int = 10) -> Path:
    """A copy of run `src` whose fit marks events censored as the bounded fit writes them: events.parquet
    gains `censored` ('', 'left', 'right'), with the largest learning events of the first n_right tokens
    that have one moved past the last checkpoint (mu = u_max + 2) and of the next n_left before the first."""
    import pandas as pd

    from tokenclock.artifacts import read_json, write_parquet

    shutil.copytree(src, dst)
    run = RunDir(dst)
    ev = pd.read_parquet(run.fit_events)
    summary = read_json(run.fit_summary)
    lo, hi = summary["u_min"], summary["u_max"]
    main = ev[ev.a > 0].sort_values("a").groupby("tok_idx").tail(1).sort_values("tok_idx").index
    ev.loc[main[:n_right], "mu"] = hi + 2.0
    ev.loc[main[n_right:n_right + n_left], "mu"] = lo - 1.0
    ev["censored"] = np.where(ev.mu > hi, "right", np.where(ev.mu < lo, "left", ""))
    write_parquet(run.fit_events, {c: ev[c].to_numpy() for c in ev.columns})
    return dst


def with_avg(src: Path, dst: Path, factor: float = 0.8) -> Path:
    """A copy of run `src` with an averaged-weight series beside the raw one (trace_avg/ holds the raw
    losses times `factor`, fit_avg/ and spectrum_avg/ copies of the raw ones)."""
    shutil.copytree(src, dst)
    run = RunDir(dst)
    avg = run.series("avg")
    for name in ("trace", "fit", "spectrum"):
        shutil.copytree(dst / name, dst / f"{name}_avg")
    loss = np.load(run.trace_loss)
    np.save(avg.trace_loss, (loss * factor).astype(np.float32))
    return dst


@pytest.fixture(scope="session")
def state_dirs(explore_dirs, tmp_path_factory) -> dict[str, Path]:
    """The tiny run with an averaged series (`both`) and with censored events (`censored`)."""
    root = tmp_path_factory.mktemp("explore_state")
    return {"both": with_avg(explore_dirs["tiny"], root / "both"),
            "censored": censor(explore_dirs["tiny"], root / "censored")}


@pytest.fixture(scope="session")
def state_runs(state_dirs):
    """Opened: both (raw), both (avg), censored."""
    from tokenclock.explore.server import open_runs

    return open_runs([state_dirs["both"], state_dirs["censored"]], log=lambda *a: None)


def served(runs):
    """A module fixture's body: the explorer over `runs` in a background thread, stopped after."""
    from tokenclock.explore.server import Background

    bg = Background(runs)
    yield bg
    bg.stop()


def _chromium() -> str | None:
    for c in (os.environ.get("TOKENCLOCK_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
              "/usr/bin/chromium"):
        if c and Path(c).is_file():
            return c
    return None


CHROMIUM = _chromium()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright (never `playwright install`); one per module."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()
