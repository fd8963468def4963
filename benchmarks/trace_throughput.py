"""Trace tokens/s against a bare forward pass over the same checkpoints and batches.

    python benchmarks/trace_throughput.py [--preset llama-500k --n-seqs 64 --steps 30]

Trains a short run (not timed), then times `tokenclock trace` and a bare loop that loads each
checkpoint with AutoModelForCausalLM and computes the per-token cross-entropy of the same
sequences. Prints both rates and the ratio (goal: overhead <= 1.10x).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
from _common import bench_config, machine_header


def bare_trace(run_dir, inputs: np.ndarray, batch: int, device: str, amp) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from tokenclock.forward import quiet_transformers
    from tokenclock.rundir import RunDir

    quiet_transformers()
    run = RunDir(run_dir)
    x = torch.from_numpy(inputs.astype(np.int64))
    t0 = time.perf_counter()
    for s in run.ckpt_steps():
        model = AutoModelForCausalLM.from_pretrained(run.ckpt(s), dtype=torch.float32).to(device).eval()
        with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=amp or torch.float32,
                                             enabled=amp is not None):
            for b in range(0, len(x), batch):
                xb = x[b:b + batch].to(device)
                logits = model(input_ids=xb[:, :-1]).logits
                torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), xb[:, 1:],
                                                  reduction="none").cpu().numpy()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="llama-500k")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--n-seqs", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--set", action="append", default=[], help="config override, e.g. trace.device=cuda")
    args = ap.parse_args()
    machine_header()

    from tokenclock.artifacts import read_npy
    from tokenclock.forward import resolve_device, trace_dtype
    from tokenclock.pipeline import train
    from tokenclock.rundir import RunDir
    from tokenclock.stages.trace.stage import trace

    cfg = bench_config(args.preset, args.steps, 8, args.seq_len,
                       ["train.warmup_steps=5", "train.ckpt_per_decade=8", f"trace.n_seqs={args.n_seqs}",
                        f"trace.batch_size={args.batch}", *args.set])
    device = resolve_device(cfg.trace.device)
    amp = trace_dtype(cfg.trace.dtype, device)
    run = tempfile.mkdtemp(prefix="tokenclock-bench-") + "/run"
    train(run, cfg, progress=False)
    trace(run, cfg.trace, progress=False)  # warm-up pass (also gives the inputs)
    inputs = read_npy(RunDir(run).trace_inputs)
    shutil.rmtree(RunDir(run).trace_dir)
    bare1 = bare_trace(run, inputs, args.batch, device, amp)
    t0 = time.perf_counter()
    meta = trace(run, cfg.trace, progress=False)
    ours = time.perf_counter() - t0
    bare2 = bare_trace(run, inputs, args.batch, device, amp)
    bare = min(bare1, bare2)
    n = meta["n_tok"] * meta["n_ckpt"]
    print(f"model {args.preset}, {meta['n_ckpt']} checkpoints x {meta['n_tok']:,} tokens ({device} {meta['dtype']})")
    print(f"bare forward        {n / bare:10,.0f} tokens/s  ({bare:.2f} s; runs {bare1:.2f} / {bare2:.2f} s)")
    print(f"tokenclock trace    {n / ours:10,.0f} tokens/s  ({ours:.2f} s, incl. token table and artifacts)")
    print(f"overhead ratio      {ours / bare:10.3f}x  (goal <= 1.10x)")


if __name__ == "__main__":
    main()
