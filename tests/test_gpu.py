"""The CUDA path: training and tracing on a GPU agree with the CPU, bf16 and torch.compile run,
MFU is reported, and torchrun starts on one GPU. Skipped where no CUDA device is present (CI);
`bash scripts/gpu_check.sh` runs these and the GPU benchmarks in one go on a GPU machine."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import tiny_overrides
from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.config import load_config
from tokenclock.rundir import RunDir

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _cfg(texts_dir, device: str, dtype: str, *extra: str):
    return load_config("tiny", tiny_overrides(texts_dir, **{"train.steps": 12, "train.device": device,
                                                            "train.dtype": dtype, "trace.device": device,
                                                            "trace.dtype": dtype}) + list(extra))


def test_cuda_training_and_trace_match_cpu(tmp_path, texts_dir):
    """fp32 on the GPU follows the CPU run (same data order, same init) within float tolerance,
    and the trace of its checkpoints on the GPU equals a trace on the CPU."""
    from tokenclock.pipeline import train
    from tokenclock.stages.trace.stage import trace

    train(tmp_path / "cpu", _cfg(texts_dir, "cpu", "fp32"), progress=False)
    s = train(tmp_path / "gpu", _cfg(texts_dir, "cuda", "fp32"), progress=False)
    assert s["device"].startswith("cuda")
    a, b = (read_parquet(RunDir(tmp_path / r).train_log) for r in ("cpu", "gpu"))
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-3, atol=1e-3)
    trace(tmp_path / "gpu", _cfg(texts_dir, "cuda", "fp32").trace, progress=False)
    shutil.copytree(tmp_path / "gpu", tmp_path / "gpu_on_cpu", ignore=shutil.ignore_patterns("trace"))
    trace(tmp_path / "gpu_on_cpu", _cfg(texts_dir, "cpu", "fp32").trace, progress=False)
    np.testing.assert_allclose(read_npy(RunDir(tmp_path / "gpu").trace_loss),
                               read_npy(RunDir(tmp_path / "gpu_on_cpu").trace_loss), rtol=1e-3, atol=1e-3)


def test_cuda_bf16_compiled_reports_mfu(tmp_path, texts_dir):
    """bf16 autocast with torch.compile and micro batches trains to finite losses, and the summary
    carries loop tokens/s and MFU against the device's peak (when the device is in perf.PEAK_BF16)."""
    from tokenclock.pipeline import train
    from tokenclock.stages.train.perf import peak_flops

    s = train(tmp_path / "run", _cfg(texts_dir, "cuda", "bf16", "train.compile=true",
                                     "train.micro_batch_size=4"), progress=False)
    log = read_parquet(RunDir(tmp_path / "run").train_log)
    assert np.isfinite(log["loss"]).all() and log["loss"][-1] < log["loss"][0]
    assert s["dtype"] == "bf16" and s["compiled"] and s["micro_batches"] == 2
    assert s["loop_tokens_per_second"] > 0
    if peak_flops("cuda") is not None:
        assert 0 < s["mfu"] < 1


def test_torchrun_on_one_gpu(tmp_path, texts_dir):
    """`torchrun --nproc_per_node=1 -m tokenclock train` on CUDA: the launcher path users start with."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    sets = tiny_overrides(texts_dir, **{"train.steps": 12, "train.device": "cuda"})
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1",
                          "--master_port", str(32500 + os.getpid() % 1000), "-m", "tokenclock", "train",
                          "--config", "tiny", "--out", str(tmp_path / "run"), "--quiet",
                          *sum((["--set", s] for s in sets), [])], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = read_json(RunDir(tmp_path / "run").manifest)["stages"]["train"]["summary"]
    assert summary["device"].startswith("cuda")


def test_cuda_fit_matches_cpu():
    """fit.device=cuda runs the same batched fitter: the same events as on the CPU."""
    from tokenclock.curves import curve
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.fitter import fit_trajectories

    u = np.log(np.unique(np.geomspace(10, 20_000, 48).round()))
    rng = np.random.default_rng(0)
    n = 2000
    Y = np.stack([curve(u, b, [a], [m], [w]) for b, a, m, w in
                  zip(rng.uniform(1, 4, n), rng.uniform(1, 4, n), rng.uniform(4, 8, n), rng.uniform(0.15, 0.5, n))])
    Y += rng.normal(0, 0.08, Y.shape)
    cpu = fit_trajectories(Y, u, FitConfig())
    gpu = fit_trajectories(Y, u, FitConfig(device="cuda"))
    same = cpu.tokens["class"] == gpu.tokens["class"]
    assert same.mean() > 0.99
    np.testing.assert_allclose(cpu.tokens["sse"][same], gpu.tokens["sse"][same], rtol=1e-3, atol=1e-6)
