"""Kill -9 of a tracked loop, restart: the trace ends identical to an uninterrupted one. The loop
(killable_loop.py) resumes from its own checkpoint, 8 steps before the last traced row, so the
restart replays traced steps (not scored twice), after a torn append (row bytes and header written,
the record not) that reopening cuts back. Both weight series (trace/ and the averaged
trace_avg/) end identical. The killed loop runs in a subprocess, the rest in this
one (for time)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.rundir import RunDir
from tokenclock.track.store import HEADER_BYTES, _header

LOOP = Path(__file__).with_name("killable_loop.py")


def _loop(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, str(LOOP), str(out), "--steps", "60", "--avg", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def _in_process(out: Path) -> int:
    """The same loop in this process (one thread, as the killed one ran), returning rows scored."""
    import torch
    from killable_loop import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main([str(out), "--steps", "60", "--avg"])
    finally:
        torch.set_num_threads(threads)


def test_kill_9_and_restart_gives_the_uninterrupted_trace(tmp_path):
    cut = tmp_path / "cut"
    first = _loop(cut, "--kill-at", "38")  # rows up to step 38 traced; own checkpoint at step 30
    assert first.returncode == -9, first.stderr[-2000:]
    run = RunDir(cut / "run")
    rows = read_json(run.trace_track)["rows"]
    assert rows[-1]["step"] == 38 and read_npy(run.trace_loss).shape[0] == len(rows)
    assert read_json(run.manifest)["stages"]["trace"]["status"] == "running"
    n_tok = read_npy(run.trace_loss).shape[1]
    with open(run.trace_loss, "r+b") as fh:  # a kill inside the next append: bytes and header, no record
        fh.seek(HEADER_BYTES + len(rows) * n_tok * 4)
        fh.write(np.full(n_tok // 2, 7.0, "<f4").tobytes())
        fh.seek(0)
        fh.write(_header(len(rows) + 1, n_tok))

    scored = _in_process(cut)  # resumes at its step 30: 30 and 38 are traced and not scored again
    assert scored == 2  # 48 and 60
    _in_process(tmp_path / "whole")
    a, b = RunDir(tmp_path / "whole" / "run"), RunDir(cut / "run")
    ax_a, ax_b = read_parquet(a.trace_axis), read_parquet(b.trace_axis)
    np.testing.assert_array_equal(ax_b["step"], ax_a["step"])
    np.testing.assert_array_equal(ax_b["tokens_seen"], ax_a["tokens_seen"])
    np.testing.assert_allclose(ax_b["cum_lr"], ax_a["cum_lr"], rtol=1e-12)
    np.testing.assert_array_equal(read_npy(b.trace_loss), read_npy(a.trace_loss))
    assert b.trace_loss.stat().st_size == a.trace_loss.stat().st_size
    assert read_json(b.manifest)["stages"]["trace"]["status"] == "done"
    # the averaged weights resume from the tracker's state_dict saved with the loop's own checkpoint
    np.testing.assert_array_equal(read_npy(b.series("avg").trace_loss), read_npy(a.series("avg").trace_loss))
    assert read_json(b.manifest)["stages"]["trace_avg"]["status"] == "done"
