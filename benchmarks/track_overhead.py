"""What the in-loop tracker costs a training loop: the same loop of the demo's model with and
without a Tracker (tokens/s and their ratio), the tracker's seconds split into scoring and writing,
its scoring against a bare no-grad forward of the same tokens (goal: <= 1.10x), and the demo-sized
schedule it adds to a demo-large run (47 rows x 51,200 tokens over 2,000 steps; goal: <= 20%).

    python benchmarks/track_overhead.py [--steps 24 --rows 6 --n-seqs 200] [--avg] [--quick]

The tracked loop scores at `--rows` evenly spaced steps of the `--steps` it trains (far denser
than a real schedule, so the cost is measurable); the demo figure is projected from the measured
seconds per training step and per tracker row.
"""
from __future__ import annotations

import argparse
import tempfile
import time

from _common import bare_step, machine_header

DEMO_ROWS, DEMO_STEPS, DEMO_SEQS = 47, 2000, 200  # demo-large: checkpoint_steps(2000, 16), trace.n_seqs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="llama-500k")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--n-seqs", type=int, default=DEMO_SEQS)
    ap.add_argument("--avg", action="store_true", help="also trace the averaged weights (demo-large traces both)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no yardstick (a smoke run)")
    a = ap.parse_args()
    if a.quick:
        a.steps, a.rows, a.n_seqs, a.batch, a.seq_len = 6, 2, 8, 4, 64
    machine_header(yardstick=not a.quick)

    import numpy as np
    import torch

    from tokenclock.forward import token_losses
    from tokenclock.precision import choose
    from tokenclock.stages.train.model import ModelConfig, build_model
    from tokenclock.track import Tracker
    from tokenclock.windows import val_windows

    vocab, device = 4096, "cpu"
    amp = choose("auto", device).amp()  # the dtype tokenclock's trainer would train in here
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (a.batch, a.seq_len + 1), generator=gen) for _ in range(a.steps)]
    val = np.random.default_rng(0).integers(0, vocab, a.n_seqs * (a.seq_len + 1) * 2)

    def loop(tracker) -> float:
        torch.manual_seed(0)
        model = build_model(ModelConfig(preset=a.preset), vocab, seed=0).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        bare_step(model, opt, batches[0], amp, device)  # warm-up, not timed
        t = tracker(model) if tracker else None
        if t is not None:
            t.score(model)  # one warm-up forward, as the bare forward below gets
        every = max(1, a.steps // a.rows)
        t0 = time.perf_counter()
        for step in range(a.steps):
            if t is not None:
                t.step(step, force=step % every == 0)
            bare_step(model, opt, batches[step], amp, device)
        seconds = time.perf_counter() - t0
        if t is not None:
            t.close()
            loop.tracker = t
        loop.model = model
        return seconds

    bare = loop(None)
    out = tempfile.mkdtemp(prefix="tokenclock-track-bench-")
    tracked = loop(lambda m: Tracker(out, m, val=val, steps=lambda s: False, n_seqs=a.n_seqs, seq_len=a.seq_len,
                                     avg=a.avg, progress=False))
    tr = loop.tracker
    rows = len(tr.done)
    series = 2 if a.avg else 1
    tok = a.steps * a.batch * a.seq_len
    print(f"loop: {a.steps} steps of {a.preset}, {a.batch}x{a.seq_len}, train dtype {'bf16' if amp else 'fp32'}; "
          f"tracker: {rows} rows x {series} series x {tr.n_tok:,} tokens")
    print(f"  bare loop    {tok / bare:10,.0f} tokens/s  ({bare:.2f} s)")
    print(f"  tracked loop {tok / tracked:10,.0f} tokens/s  ({tracked:.2f} s)  ratio {tracked / bare:.3f}")
    s = tr.seconds
    per_row = (s["score"] + s["write"]) / rows
    print(f"  tracker: score {s['score']:.2f} s, write {s['write']:.2f} s, averaging {s['avg']:.3f} s "
          f"({per_row:.3f} s per row, {s['write'] / rows * 1e3:.1f} ms of it writing)")

    # a bare no-grad forward of the same windows in the same batches: what the scoring cannot beat
    windows = torch.from_numpy(val_windows(val, 0, a.n_seqs, a.seq_len))
    model = loop.model.eval()
    token_losses(model, windows[:32], None, device)  # warm-up
    t0 = time.perf_counter()
    for _ in range(rows * series):
        for b in range(0, len(windows), 32):
            token_losses(model, windows[b:b + 32], None, device).numpy()
    fwd = (time.perf_counter() - t0) / rows
    print(f"  bare forward of the same tokens: {fwd:.3f} s per row; tracker / bare forward = "
          f"{per_row / fwd:.3f} (goal <= 1.10)")

    step_s = bare / a.steps
    demo_row = per_row * (DEMO_SEQS / a.n_seqs)
    added = DEMO_ROWS * demo_row / (DEMO_STEPS * step_s)
    print(f"demo-large schedule ({DEMO_ROWS} rows x {DEMO_SEQS * 256:,} tokens x {series} series over "
          f"{DEMO_STEPS:,} steps): {DEMO_ROWS * demo_row:.0f} s added to {DEMO_STEPS * step_s:.0f} s of training "
          f"= +{100 * added:.1f}% (goal <= 20%)" + ("" if a.seq_len == 256 and a.batch == 16 else
                                                   " [projected from other sizes: not the demo's]"))


if __name__ == "__main__":
    main()
