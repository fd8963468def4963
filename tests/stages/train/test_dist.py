"""torchrun on CPU (gloo): 2-process data-parallel training matches a single process with the
same global batch (same data order, losses within float tolerance), checkpoints written once;
the 2-process runs also accumulate 2 micro batches per step."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from conftest import tiny_overrides
from tokenclock.artifacts import read_json, read_parquet
from tokenclock.rundir import RunDir


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
                          *_args(multi, texts_dir), "--set", "train.micro_batch_size=2"],  # + DDP no_sync
                         env=env, capture_output=True, text=True)
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

    from tokenclock.artifacts import read_npy

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


def test_two_process_fsdp_matches_single(tmp_path, texts_dir):
    """train.fsdp shards parameters and AdamW state over 2 processes: same losses as one process,
    full checkpoints written once (they load in transformers), and a resumed FSDP run continues
    from the saved sharded optimizer state."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    single, multi = tmp_path / "single", tmp_path / "fsdp"
    fp32 = ["--set", "train.dtype=fp32"]  # bf16 rounding of each micro batch would blur the comparison
    subprocess.run([sys.executable, "-m", "tokenclock", *_args(single, texts_dir), *fp32], check=True, env=env,
                   capture_output=True)

    def torchrun(steps):
        args = _args(multi, texts_dir) + fp32 + ["--set", "train.fsdp=true", "--set", f"train.steps={steps}",
                                          "--set", "train.keep_state_steps=[6]",
                                          "--set", "train.micro_batch_size=2"]  # 2 passes per step
        return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                               "--master_port", str(31500 + os.getpid() % 1000), "-m", "tokenclock", *args],
                              env=env, capture_output=True, text=True)

    out = torchrun(12)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = read_parquet(RunDir(single).train_log), read_parquet(RunDir(multi).train_log)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=2e-3, atol=2e-3)
    wa = load_file(str(RunDir(single).ckpt(12) / "model.safetensors"))
    wb = load_file(str(RunDir(multi).ckpt(12) / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), rtol=1e-2, atol=1e-3, err_msg=k)
    AutoModelForCausalLM.from_pretrained(RunDir(multi).ckpt(12))
    assert read_json(RunDir(multi).manifest)["stages"]["train"]["summary"]["world_size"] == 2

    # a crash after step 6: its sharded AdamW state (kept, gathered) is all that is left
    import shutil

    from tokenclock.manifest import update_stage

    r = RunDir(multi)
    shutil.copy(r.ckpt(6) / "optimizer.safetensors", r.train_state)
    for s in r.ckpt_steps():
        if s > 6:
            shutil.rmtree(r.ckpt(s))
    update_stage(r, "train", "running")
    out = torchrun(12)
    assert out.returncode == 0, out.stderr[-3000:]
    wc = load_file(str(r.ckpt(12) / "model.safetensors"))
    for k in wb:
        np.testing.assert_allclose(wb[k].numpy(), wc[k].numpy(), rtol=1e-5, atol=1e-6, err_msg=k)
