"""Averaged weights in the loop: trace_avg/ holds the power-function EMA of train.avg=ema
(stages/train/average.py, the same class) updated after every optimizer step as tokenclock's
trainer updates it, scored at the same steps as the raw weights; fit and spectrum take it with
weights=avg."""
from __future__ import annotations

import numpy as np
import torch
from killable_loop import TinyLM

from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.forward import token_losses
from tokenclock.rundir import RunDir
from tokenclock.stages.fit.stage import fit
from tokenclock.stages.spectrum.stage import spectrum
from tokenclock.stages.train.average import WeightAverage
from tokenclock.track import Tracker
from tokenclock.windows import val_windows


class Logits(torch.nn.Module):
    """token_losses calls model(input_ids=...).logits."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.m(input_ids))


def test_averaged_series_is_the_trainers_ema(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = ((np.arange(20_000) * 7) % 61 + rng.integers(0, 3, 20_000)).astype(np.int64)
    model = TinyLM()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ref = WeightAverage(model, 0.1)  # what tokenclock's trainer keeps with train.avg=ema
    steps = [0, 1, 2, 3, 5, 8, 13, 20]
    windows = torch.from_numpy(val_windows(data[-4000:], 0, 8, 24))
    expect = []
    with Tracker(tmp_path / "out", model, val=data[-4000:], steps=steps, n_seqs=8, seq_len=24,
                 avg=True, avg_sigma_rel=0.1, progress=False) as tracker:
        for step in range(21):
            tracker.step(step, tokens_seen=step * 256, lr=3e-3)
            if step in steps:
                expect.append(token_losses(Logits(ref.model), windows, None, "cpu").reshape(-1).numpy())
            if step == 20:
                break
            b = torch.from_numpy(np.stack([data[o:o + 25] for o in rng.integers(0, 15_000, 8)]))
            loss = torch.nn.functional.cross_entropy(model(b[:, :-1]).transpose(1, 2), b[:, 1:])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ref.update(step + 1)  # the trainer's call after update number step + 1
    raw, avg = RunDir(tmp_path / "out"), RunDir(tmp_path / "out", "avg")
    got = read_npy(avg.trace_loss)
    np.testing.assert_allclose(got, np.stack(expect), rtol=1e-5, atol=1e-6)
    assert read_parquet(avg.trace_axis)["step"].tolist() == steps
    assert not np.allclose(got[-1], read_npy(raw.trace_loss)[-1])  # a second series, not a copy
    meta = read_json(avg.trace_meta)
    assert meta["weights"] == "avg" and abs(meta["average"]["sigma_rel"] - 0.1) < 1e-9
    fit(avg, progress=False)
    assert spectrum(avg, progress=False)
    assert avg.fit_events.is_file() and not raw.fit_dir.exists()
