"""The examples run as written (tiny sizes), in this process: a plain loop, the Hugging Face
Trainer (tc.track.HFCallback) and Lightning (tc.track.LightningCallback), each with the real
framework on CPU, ending with tokenclock fit and spectrum; explore accepts what the Trainer and
Lightning callbacks wrote, and report what the Trainer's wrote."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.rundir import RunDir
from tokenclock.stages.train.schedule import checkpoint_steps

EXAMPLES = Path(__file__).parents[2] / "examples"
TINY = ["--steps", "8", "--batch", "4", "--seq-len", "32", "--n-seqs", "4"]


def _run(name: str, out: Path, *extra: str) -> RunDir:
    sys.path.insert(0, str(EXAMPLES))
    try:
        importlib.import_module(name).main(["--out", str(out), *TINY, *extra])
    finally:
        sys.path.remove(str(EXAMPLES))
    return RunDir(out)


def _check_trace(run: RunDir, steps: list[int]) -> None:
    loss = read_npy(run.trace_loss)
    ax = read_parquet(run.trace_axis)
    assert ax["step"].tolist() == steps and loss.shape == (len(steps), 4 * 32)
    assert np.isfinite(loss).all() and loss[-1].mean() < loss[0].mean()  # it learned something
    np.testing.assert_array_equal(ax["tokens_seen"], np.array(steps) * 4 * 32)
    assert (np.diff(ax["cum_lr"]) >= 0).all() and ax["cum_lr"][-1] > 0
    m = read_json(run.manifest)["stages"]
    assert m["trace"]["status"] == m["fit"]["status"] == m["spectrum"]["status"] == "done"
    assert not run.lock.exists()


SCHEDULE = checkpoint_steps(8, 16)  # the Tracker's default: log-spaced, 16 per decade


def test_plain_loop_example(tmp_path):
    run = _run("track_plain_loop", tmp_path / "plain", "--no-report")
    _check_trace(run, SCHEDULE)


@pytest.mark.parametrize("name", ["track_hf_trainer", "track_lightning"])
def test_framework_example_and_report_and_explore(name, tmp_path):
    pytest.importorskip("lightning" if name == "track_lightning" else "accelerate")
    from tokenclock.explore.data import open_run
    from tokenclock.stages.report.stage import report

    run = _run(name, tmp_path / name, "--no-report")
    _check_trace(run, SCHEDULE)
    assert read_json(run.trace_meta)["n_ckpt"] == len(SCHEDULE)
    if name == "track_hf_trainer":  # one report is enough: both callbacks write through the same Tracker
        assert report(run.root).is_file()
    data = open_run(run.root, log=lambda *a: None)
    assert data.fit is not None and data.has_spectrum and data.n_tok == 4 * 32
