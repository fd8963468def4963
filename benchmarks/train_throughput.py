"""Trainer tokens/s against a bare torch training loop of the same model and batches.

    python benchmarks/train_throughput.py [--preset llama-500k --steps 100 --batch 16 --seq-len 256]

Prints both rates and their ratio (goal: overhead <= 1.10x), and the cost of train.avg=ema (the
averaged weights: one lerp per step and a second checkpoint folder) as tokens/s with and without. The tokenclock figure includes
everything the trainer does (data order, schedule, clipping, logging, its log-spaced checkpoints
with validation loss). On a GPU it also prints MFU (model FLOPs from tokenclock.stages.train.perf against the
device's dense bf16 peak); `--set train.compile=true` compiles both loops. GPU example:

    python benchmarks/train_throughput.py --preset llama-100m --batch 32 --seq-len 1024 --steps 60 \
        --set train.device=cuda --set train.dtype=bf16 --set train.compile=true
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from _common import bare_step, bench_config, machine_header


def bare_loop(cfg, run_dir, steps: int, warm: int = 3) -> float:
    """Seconds for `steps` updates of a plain loop, timed after `warm` untimed ones (compile,
    kernel autotuning), like the trainer's steady loop rate."""
    import torch

    from tokenclock import precision
    from tokenclock.artifacts import read_json, read_npy
    from tokenclock.forward import resolve_device
    from tokenclock.rundir import RunDir
    from tokenclock.stages.train.model import build_model
    from tokenclock.windows import batch_offsets, make_batch

    run = RunDir(run_dir)
    meta = read_json(run.tokens_meta)
    device = resolve_device(cfg.train.device)
    amp = precision.choose(cfg.train.dtype, device).amp()
    stream = read_npy(run.token_stream("train"), mmap=True)
    model = build_model(cfg.model, meta["vocab_size"], cfg.seed).to(device)
    if cfg.train.compile:
        model.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr_peak, fused=device.startswith("cuda"))
    t0 = time.perf_counter()
    for step in range(steps + warm):
        if step == warm:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        batch = make_batch(stream, batch_offsets(cfg.seed, step, len(stream), cfg.train.batch_size,
                                                 cfg.train.seq_len), cfg.train.seq_len).to(device)
        bare_step(model, opt, batch, amp, device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def ema_cost(cfg, run_dir, steps: int = 10) -> tuple[float, float]:
    """(median seconds of one training step, median seconds of one train.avg EMA update after it),
    interleaved in one process, so the ratio holds on a loaded machine."""
    import torch

    from tokenclock import precision
    from tokenclock.artifacts import read_json, read_npy
    from tokenclock.rundir import RunDir
    from tokenclock.stages.train.average import WeightAverage
    from tokenclock.stages.train.model import build_model
    from tokenclock.windows import batch_offsets, make_batch

    run = RunDir(run_dir)
    amp = precision.choose(cfg.train.dtype, "cpu").amp()
    stream = read_npy(run.token_stream("train"), mmap=True)
    model = build_model(cfg.model, read_json(run.tokens_meta)["vocab_size"], cfg.seed)
    avg, opt = WeightAverage(model, cfg.train.avg_sigma_rel), torch.optim.AdamW(model.parameters(), lr=1e-3)
    t_step, t_avg = [], []
    for step in range(steps + 2):
        batch = make_batch(stream, batch_offsets(cfg.seed, step, len(stream), cfg.train.batch_size,
                                                 cfg.train.seq_len), cfg.train.seq_len)
        t0 = time.perf_counter()
        bare_step(model, opt, batch, amp, "cpu")  # in the dtype the trainer would choose here
        t1 = time.perf_counter()
        avg.update(step + 1)
        if step >= 2:
            t_step.append(t1 - t0)
            t_avg.append(time.perf_counter() - t1)
    return float(sorted(t_step)[len(t_step) // 2]), float(sorted(t_avg)[len(t_avg) // 2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="llama-500k")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--no-avg", action="store_true", help="skip the train.avg=ema run")
    ap.add_argument("--ema-only", action="store_true",
                    help="only time the EMA update against a training step, interleaved in one process")
    ap.add_argument("--no-dense", action="store_true",
                    help="skip the dense-checkpoint run (large models: each checkpoint is a full save)")
    args = ap.parse_args()

    from tokenclock.pipeline import train
    from tokenclock.stages.train.perf import peak_flops

    sparse = bench_config(args.preset, args.steps, args.batch, args.seq_len,
                          ["train.warmup_steps=5", "train.ckpt_per_decade=1", *args.set])
    dense = bench_config(args.preset, args.steps, args.batch, args.seq_len,
                         ["train.warmup_steps=5", "train.ckpt_per_decade=16", *args.set])
    cfg = sparse
    machine_header(cfg.train.dtype, cfg.train.device)
    tmp = tempfile.mkdtemp(prefix="tokenclock-bench-")
    # tokenize once (not timed), then alternate: bare, tokenclock (sparse ckpts), bare, tokenclock (dense)
    from tokenclock.stages.corpus.stage import build_corpus
    from tokenclock.stages.tokens.stage import tokenize

    build_corpus(tmp + "/run", cfg.corpus, progress=False)
    tokenize(tmp + "/run", cfg.tokens, progress=False)
    if args.ema_only:
        t_step, t_avg = ema_cost(sparse, tmp + "/run")
        print(f"EMA update (train.avg=ema) {t_avg * 1e3:.2f} ms per step against {t_step * 1e3:.0f} ms per training step "
              f"of {args.preset}, {args.batch}x{args.seq_len} tokens ({t_avg / t_step:.3%}; interleaved in one process)")
        return
    shutil.copytree(tmp + "/run", tmp + "/dense")
    shutil.copytree(tmp + "/run", tmp + "/avg")
    bare1 = bare_loop(cfg, tmp + "/run", args.steps)
    t0 = time.perf_counter()
    summary = train(tmp + "/run", sparse, progress=False)
    ours = time.perf_counter() - t0
    if not args.no_avg:
        avg_cfg = bench_config(args.preset, args.steps, args.batch, args.seq_len,
                               ["train.warmup_steps=5", "train.ckpt_per_decade=1", "train.avg=ema", *args.set])
        t0 = time.perf_counter()
        asum = train(tmp + "/avg", avg_cfg, progress=False)
        ours_avg = time.perf_counter() - t0
    bare2 = bare_loop(cfg, tmp + "/run", args.steps)
    if not args.no_dense:
        t0 = time.perf_counter()
        dsum = train(tmp + "/dense", dense, progress=False)
        ours_dense = time.perf_counter() - t0
    bare = min(bare1, bare2)
    tokens = args.steps * args.batch * args.seq_len
    print(f"model {args.preset} ({summary['n_params']:,} non-embedding params), {args.steps} steps of "
          f"{args.batch}x{args.seq_len} tokens, {summary['device']} {summary['dtype']}")
    print(f"bare torch loop     {tokens / bare:10,.0f} tokens/s  ({bare:.2f} s; runs {bare1:.2f} / {bare2:.2f} s)")
    print(f"tokenclock train    {tokens / ours:10,.0f} tokens/s  ({ours:.2f} s, {summary['n_checkpoints']} checkpoints)")
    if not args.no_dense:
        print(f"  dense checkpoints {tokens / ours_dense:10,.0f} tokens/s  ({ours_dense:.2f} s, {dsum['n_checkpoints']} "
              f"checkpoints: {(ours_dense - ours) / max(1, dsum['n_checkpoints'] - summary['n_checkpoints']):.3f} s each)")
    if not args.no_avg:
        aloop = asum["loop_tokens_per_second"]
        print(f"  with train.avg    {tokens / ours_avg:10,.0f} tokens/s  ({ours_avg:.2f} s; steady loop {aloop:,.0f} "
              f"tokens/s; cost {ours_avg / ours:.3f}x wall, {summary['loop_tokens_per_second'] / aloop:.3f}x loop)")
        if summary["device"] == "cpu":
            t_step, t_avg = ema_cost(sparse, tmp + "/run")
            print(f"  EMA update alone  {t_avg * 1e3:10.2f} ms per step against {t_step * 1e3:.0f} ms per training step "
                  f"({t_avg / t_step:.2%}; interleaved in one process)")
    loop = summary["loop_tokens_per_second"]
    print(f"  steady loop       {loop:10,.0f} tokens/s  (without checkpoints and the first 3 steps)")
    print(f"overhead ratio      {ours / bare:10.3f}x  (wall clock of everything; goal <= 1.10x"
          f"{'; includes compiling' if cfg.train.compile else ''})")
    print(f"  steady loop ratio {tokens / bare / loop:10.3f}x  (bare tokens/s over the trainer's steady loop)")
    if not args.no_dense:
        print(f"  with dense ckpts  {ours_dense / bare:10.3f}x  (a checkpoint = save + validation loss; the demo "
              f"writes 47 in 2,000 steps)")
    peak = peak_flops(summary["device"])
    if peak:
        fpt = summary["flops_per_token"]  # tokenclock.perf.flops_per_token, as the trainer counts it
        print(f"MFU bare loop       {tokens / bare * fpt / peak:10.1%}  ({fpt / 1e9:.2f} GFLOP/token, "
              f"peak {peak / 1e12:.0f} TFLOP/s bf16)")
        print(f"MFU tokenclock loop {loop * fpt / peak:10.1%}  ({loop:,.0f} tokens/s without checkpoints; "
              "goal >= 40%)")
        print(f"MFU tokenclock all  {tokens / ours * fpt / peak:10.1%}  (checkpoints and validation included)")


if __name__ == "__main__":
    main()
