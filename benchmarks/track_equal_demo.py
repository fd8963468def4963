"""The in-loop trace against `tokenclock trace` on the demo config: trains the demo (on Python's own
documentation text, offline) with tokenclock's trainer and a Tracker called after every update (its
averaged weights too, as the demo's train.avg=ema), then traces the run's saved checkpoints of
both series and prints, per series, the rows and the largest difference between the two traces.

    python benchmarks/track_equal_demo.py [--config demo] [--out DIR] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

from _common import doc_texts, machine_header


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="demo")
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    a = ap.parse_args()
    machine_header(yardstick=False)

    import numpy as np

    from tokenclock.artifacts import read_json, read_npy
    from tokenclock.config import load_config
    from tokenclock.forward import quiet_transformers
    from tokenclock.pipeline import prepare
    from tokenclock.rundir import RunDir
    from tokenclock.stages.trace.stage import trace
    from tokenclock.stages.train.stage import read_data, run_config
    from tokenclock.stages.train.trainer import Trainer
    from tokenclock.track.tracker import Tracker

    cfg = load_config(a.config, [f"corpus.sources=[{doc_texts()}]", "corpus.max_chars=null",
                                 "corpus.val_fraction=0.1", *a.sets])
    quiet_transformers()
    root = Path(a.out or tempfile.mkdtemp(prefix="tokenclock-track-equal-"))
    run = RunDir(root / "run")
    prepare(run.root, cfg, progress=False)
    spent = {"tracker": 0.0}

    class TrackedTrainer(Trainer):
        """tokenclock's trainer as a user's loop: the tracker after every update (and at step 0)."""

        def checkpoint(self, step, train_loss, seconds):
            super().checkpoint(step, train_loss, seconds)
            if step == 0:
                self._track(0)

        def step(self, step):
            loss = super().step(step)
            self._track(step + 1)
            return loss

        def _track(self, step):
            t0 = time.perf_counter()
            self.tracker.step(step, tokens_seen=step * self.tc.tokens_per_step, cum_lr=self.cum_lr)
            spent["tracker"] += time.perf_counter() - t0

    tc = cfg.train
    trainer = TrackedTrainer(run, cfg)
    t0 = time.perf_counter()
    with run.stage("train", run_config(cfg)):  # trace reads seq_len and seed from here
        trainer.setup(read_data(run, cfg, read_json(run.tokens_meta)))
        vstream = read_npy(run.token_stream("val"), mmap=True)
        with Tracker(root / "tracked", trainer.model, val=vstream, steps=tc.ckpt_steps(), n_seqs=cfg.trace.n_seqs,
                     seq_len=tc.seq_len, seed=cfg.seed, batch_size=cfg.trace.batch_size, tokenizer=run.tokenizer,
                     avg=tc.avg == "ema", avg_sigma_rel=tc.avg_sigma_rel, progress=False) as tracker:
            trainer.tracker = tracker
            trainer.resume()
            trainer.loop()
    train_s = time.perf_counter() - t0
    print(f"{a.config}: {tc.steps} steps x {tc.batch_size} x {tc.seq_len}, {len(tc.ckpt_steps())} checkpoints; "
          f"training with the tracker {train_s:.0f} s, of which the tracker {spent['tracker']:.0f} s "
          f"(score {tracker.seconds['score']:.0f} s, write {tracker.seconds['write']:.1f} s, "
          f"averaging {tracker.seconds['avg']:.1f} s) and checkpoints {trainer.ckpt_seconds:.0f} s")
    for weights in (["raw", "avg"] if tc.avg == "ema" else ["raw"]):
        t0 = time.perf_counter()
        trace(run.root, dataclasses.replace(cfg.trace, weights=weights), progress=False)
        ref = read_npy(RunDir(run.root, weights).trace_loss)
        got = read_npy(RunDir(root / "tracked", weights).trace_loss)
        diff = np.abs(got.astype(np.float64) - ref)
        print(f"  {weights}: tokenclock trace {ref.shape[0]} rows x {ref.shape[1]:,} tokens in "
              f"{time.perf_counter() - t0:.0f} s; in-loop trace {got.shape[0]} rows; max |difference| "
              f"{diff.max():.2e} nats (rows with any difference: {int((diff.max(1) > 0).sum())}); "
              f"mean loss first/last row {ref[0].mean():.4f} / {ref[-1].mean():.4f}")


if __name__ == "__main__":
    main()
