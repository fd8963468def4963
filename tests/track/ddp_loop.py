"""A user's DDP loop under torchrun (2 gloo processes on CPU) with a Tracker: each rank scores
its share of the validation windows, rank 0 writes. Rank 0 also scores every window itself at
each traced step into OUT/reference.npy, for the test to compare.

    torchrun --nproc_per_node=2 ddp_loop.py OUT
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as td
from killable_loop import TinyLM, stream

from tokenclock.forward import token_losses
from tokenclock.track import Tracker
from tokenclock.track.live_model import Logits, default_forward
from tokenclock.windows import val_windows

STEPS = [0, 1, 2, 4, 8, 12]


def main() -> None:
    out = Path(sys.argv[1])
    td.init_process_group("gloo")
    rank, world = td.get_rank(), td.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(TinyLM())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train, val = stream(50_000, 0), stream(5_000, 1)
    windows = torch.from_numpy(val_windows(val, 0, 9, 32))  # 9: the ranks hold 5 and 4 windows
    ref = []
    with Tracker(out / "run", model, val=val, steps=STEPS, n_seqs=9, seq_len=32, batch_size=2,
                 progress=False) as tracker:
        for step in range(13):
            if tracker.step(step, tokens_seen=step * 8 * 32, lr=3e-3) and rank == 0:
                with torch.no_grad():
                    ref.append(token_losses(Logits(model.module.eval(), default_forward), windows, None, "cpu")
                               .reshape(-1).numpy())
                model.train()
            off = np.random.default_rng([0, step]).integers(0, len(train) - 33, 8)[rank::world]
            batch = torch.from_numpy(np.stack([train[o:o + 33] for o in off]))
            loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).transpose(1, 2), batch[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
    if rank == 0:
        np.save(out / "reference.npy", np.stack(ref))
    td.destroy_process_group()


if __name__ == "__main__":
    main()
