"""The tracker under torchrun: 2 gloo processes on CPU split the validation windows (9 of them:
5 and 4, in batches of 2, so the ranks make different numbers of forward passes), and rank 0
writes one trace equal to rank 0's own scoring of every window."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.rundir import RunDir


def test_two_processes_shard_the_windows_and_rank_0_writes(tmp_path):
    here = Path(__file__).parent
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(here), *sys.path]))
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port", str(31500 + os.getpid() % 1000), str(here / "ddp_loop.py"),
                          str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = RunDir(tmp_path / "run")
    loss, ref = read_npy(run.trace_loss), np.load(tmp_path / "reference.npy")
    assert loss.shape == ref.shape == (6, 9 * 32)
    np.testing.assert_allclose(loss, ref, rtol=1e-5, atol=1e-6)
    assert read_parquet(run.trace_axis)["step"].tolist() == [0, 1, 2, 4, 8, 12]
    stage = read_json(run.manifest)["stages"]["trace"]
    assert stage["status"] == "done" and stage["world_size"] == 2 and not run.lock.exists()
    assert not list(tmp_path.rglob("*.tmp[0-9]*"))
