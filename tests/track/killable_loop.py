"""A user's own training loop with its own resumable checkpoint (model, AdamW, step and the
tracker's state_dict, saved every `--save-every` steps), for the kill -9 test:

    python killable_loop.py OUT --steps 60 [--kill-at STEP]

--kill-at sends SIGKILL to this process right after tracker.step(STEP) returns. Prints (and
main returns) the number of rows this process scored."""
from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import numpy as np
import torch

from tokenclock.track import Tracker


class TinyLM(torch.nn.Module):
    """Any module that maps token ids (batch, seq_len) to logits (batch, seq_len, vocab): here each
    position sees its token and the one before (causal, and fast on a busy CPU)."""

    def __init__(self, vocab: int = 64, hidden: int = 32):
        super().__init__()
        self.emb, self.prev = torch.nn.Embedding(vocab, hidden), torch.nn.Embedding(vocab, hidden)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.GELU())
        self.out = torch.nn.Linear(hidden, vocab)

    def forward(self, x):
        before = torch.nn.functional.pad(x, (1, 0))[:, :-1]
        return self.out(self.mlp(self.emb(x) + self.prev(before)))


def stream(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ((np.arange(n) * 7) % 61 + rng.integers(0, 3, n)).astype(np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--kill-at", type=int, default=-1)
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--avg", action="store_true", help="also trace the averaged weights (trace_avg/)")
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    model = TinyLM()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train, val = stream(50_000, 0), stream(5_000, 1)
    own = a.out / "own_ckpt.pt"  # the user's checkpoint, not tokenclock's
    state = torch.load(own, weights_only=True) if own.is_file() else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
    tracker = Tracker(a.out / "run", model, val=val, steps=a.steps, per_decade=10, n_seqs=8, seq_len=32,
                      avg=a.avg, progress=False)
    if state is not None:
        tracker.load_state_dict(state["tracker"])
    start, scored = (state["step"] if state else 0), 0
    for step in range(start, a.steps + 1):
        lr = 3e-3 * min(1.0, (step + 1) / 10) * (1 - 0.9 * step / a.steps)
        scored += tracker.step(step, tokens_seen=step * 8 * 32, lr=lr)
        if step == a.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == a.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr
        off = np.random.default_rng([0, step]).integers(0, len(train) - 33, 8)
        batch = torch.from_numpy(np.stack([train[o:o + 33] for o in off]))
        loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).transpose(1, 2), batch[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % a.save_every == 0:
            tmp = own.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                        "tracker": tracker.state_dict()}, tmp)
            os.replace(tmp, own)
    tracker.close()
    print(f"scored {scored}")
    return scored


if __name__ == "__main__":
    main()
