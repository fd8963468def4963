"""What the in-loop tracker costs a training loop: the same loop of the demo's model with and
without a Tracker (tokens/s and their ratio), the tracker's seconds split into scoring and writing,
its scoring against a bare no-grad forward of the same tokens (goal: <= 1.10x), and the demo-sized
schedule it adds to a demo-large run (47 rows x 51,200 tokens over 2,000 steps; goal: <= 20%).

    python benchmarks/track_overhead.py [--steps 24 --rows 6 --n-seqs 200] [--avg] [--quick]

The loop scores at `--rows` evenly spaced steps of the `--steps` it trains (far denser than a real
schedule, so the cost is measurable), and after each row runs a bare forward of the same tokens.
Each training step, row and forward is timed on its own and summarised by its median (a shared
machine makes whole-loop times swing); the loop with and without the tracker and the demo figure
are computed from those medians (a row counts its scoring, its writing and any slowdown of the
training step right after it).
"""
from __future__ import annotations

import argparse
import statistics
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
    from tokenclock.stages.train.config import ModelConfig
    from tokenclock.stages.train.model import build_model
    from tokenclock.track.tracker import Tracker
    from tokenclock.windows import val_windows

    vocab, device = 4096, "cpu"
    amp = choose("auto", device).amp()  # the dtype tokenclock's trainer would train in here
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (a.batch, a.seq_len + 1), generator=gen) for _ in range(a.steps)]
    val = np.random.default_rng(0).integers(0, vocab, a.n_seqs * (a.seq_len + 1) * 2)

    # One loop, every duration timed on its own and summarised by its median: on a shared machine a
    # whole-loop time swings by 3x between two runs, a median of many short timings much less.
    torch.manual_seed(0)
    model = build_model(ModelConfig(preset=a.preset), vocab, seed=0).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bare_step(model, opt, batches[0], amp, device)  # warm-up, not timed
    out = tempfile.mkdtemp(prefix="tokenclock-track-bench-")
    tr = Tracker(out, model, val=val, steps=lambda s: False, n_seqs=a.n_seqs, seq_len=a.seq_len, avg=a.avg,
                 progress=False)
    windows = torch.from_numpy(val_windows(val, 0, a.n_seqs, a.seq_len))
    series = 2 if a.avg else 1

    def bare_forward() -> float:
        """A no-grad forward of the same windows in the same batches, per series: what scoring cannot beat."""
        model.eval()
        t0 = time.perf_counter()
        for _ in range(series):
            for b in range(0, len(windows), 32):
                token_losses(model, windows[b:b + 32], None, device).numpy()
        model.train()
        return time.perf_counter() - t0

    tr.score(model)  # warm-up of both, not timed
    bare_forward()
    every = max(1, a.steps // a.rows)
    steps_s, after_row_s, rows_s, fwd_s, write_s = [], [], [], [], []
    for step in range(a.steps):
        row = step % every == 0
        if row:
            w0, t0 = tr.seconds["write"], time.perf_counter()
            tr.step(step, force=True)
            rows_s.append(time.perf_counter() - t0)
            write_s.append(tr.seconds["write"] - w0)
            fwd_s.append(bare_forward())
        else:
            tr.step(step)
        t0 = time.perf_counter()
        bare_step(model, opt, batches[step], amp, device)
        (after_row_s if row else steps_s).append(time.perf_counter() - t0)
    tr.close()
    med = statistics.median
    step_s, row_s = med(steps_s), med(rows_s)
    tok = a.batch * a.seq_len
    print(f"loop: {a.steps} steps of {a.preset}, {a.batch}x{a.seq_len}, train dtype {'bf16' if amp else 'fp32'}; "
          f"tracker: {len(rows_s)} rows x {series} series x {tr.n_tok:,} tokens (medians of each timing)")
    print(f"  training step {step_s:.3f} s ({tok / step_s:,.0f} tokens/s); the step right after a row "
          f"{med(after_row_s):.3f} s")
    print(f"  tracker row {row_s:.3f} s = scoring {row_s - med(write_s):.3f} s + writing {1e3 * med(write_s):.1f} ms; "
          f"bare forward of the same tokens {med(fwd_s):.3f} s; tracker / bare forward = "
          f"{row_s / med(fwd_s):.3f} (goal <= 1.10)")
    loop_with = a.steps * step_s + len(rows_s) * (row_s + med(after_row_s) - step_s)
    print(f"  this loop: {a.steps * tok / (a.steps * step_s):,.0f} tokens/s bare, {a.steps * tok / loop_with:,.0f} "
          f"with the tracker (ratio {loop_with / (a.steps * step_s):.3f}; {len(rows_s)} rows in {a.steps} steps)")
    demo_row = (row_s + med(after_row_s) - step_s) * DEMO_SEQS / a.n_seqs
    added = DEMO_ROWS * demo_row / (DEMO_STEPS * step_s)
    same = a.seq_len == 256 and a.batch == 16
    print(f"demo-large schedule ({DEMO_ROWS} rows x {DEMO_SEQS * 256:,} tokens x {series} series over {DEMO_STEPS:,} "
          f"steps): {DEMO_ROWS * demo_row:.0f} s added to {DEMO_STEPS * step_s:.0f} s of training = "
          f"+{100 * added:.1f}% (goal <= 20%)" + ("" if same else " [projected from other sizes: not the demo's]"))


if __name__ == "__main__":
    main()
