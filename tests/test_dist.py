"""torchrun on CPU (gloo): 2-process data-parallel training matches a single process with the
same global batch (same data order, losses within float tolerance), checkpoints written once."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tokenclock.rundir import RunDir, read_json, read_parquet

from conftest import tiny_overrides


def _args(out, texts_dir):
    sets = tiny_overrides(texts_dir, **{"train.steps": 12, "train.threads": 1})
    return ["train", "--config", "tiny", "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])]


def test_two_process_training_matches_single(tmp_path, texts_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    single, multi = tmp_path / "single", tmp_path / "multi"
    subprocess.run([sys.executable, "-m", "tokenclock", *_args(single, texts_dir)], check=True, env=env,
                   capture_output=True)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port", str(29500 + os.getpid() % 1000), "-m", "tokenclock",
                          *_args(multi, texts_dir)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = read_parquet(RunDir(single).train_log), read_parquet(RunDir(multi).train_log)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-3, atol=2e-3)
    assert RunDir(multi).ckpt_steps() == RunDir(single).ckpt_steps()
    m = read_json(RunDir(multi).manifest)
    assert m["stages"]["train"]["status"] == "done" and m["stages"]["train"]["summary"]["world_size"] == 2
    ia, ib = read_parquet(RunDir(single).ckpt_index), read_parquet(RunDir(multi).ckpt_index)
    np.testing.assert_allclose(ia["val_loss"], ib["val_loss"], rtol=2e-3)


def test_two_process_trace_matches_single(tiny_run, tmp_path):
    """torchrun trace shards the sequences and writes one loss matrix equal to a 1-process trace."""
    import shutil

    from tokenclock.rundir import read_npy

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("trace", "fit", "spectrum", "report"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port", str(30500 + os.getpid() % 1000), "-m", "tokenclock", "trace",
                          str(run), "--config", "tiny", "--quiet", "--set", "trace.n_seqs=48"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    a = read_npy(RunDir(tiny_run).trace_loss)
    b = read_npy(RunDir(run).trace_loss)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert read_json(RunDir(run).manifest)["stages"]["trace"]["status"] == "done"
