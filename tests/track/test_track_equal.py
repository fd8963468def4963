"""The in-loop trace equals the checkpoint trace: tokenclock's own trainer on the tiny preset, with
a Tracker called at its checkpoint steps instead of writing checkpoints, gives row for row the
loss matrix `tokenclock trace` made from the same run's saved checkpoints (the tiny_run fixture:
same config and seed, so the same weights at every step)."""
from __future__ import annotations

import shutil

import numpy as np

from conftest import tiny_overrides
from tokenclock.artifacts import read_json, read_npy, read_parquet
from tokenclock.config import load_config
from tokenclock.rundir import RunDir
from tokenclock.stages.train.stage import read_data
from tokenclock.stages.train.trainer import Trainer
from tokenclock.track import Tracker


class TrackedTrainer(Trainer):
    """The trainer as a user's loop: at each checkpoint step it calls the tracker and saves nothing."""

    tracker: Tracker

    def checkpoint(self, step: int, train_loss: float, seconds: float) -> None:
        self.tracker.step(step, tokens_seen=step * self.tc.tokens_per_step, cum_lr=self.cum_lr)


def test_in_loop_trace_equals_checkpoint_trace(tiny_run, texts_dir, tmp_path):
    cfg = load_config("tiny", tiny_overrides(texts_dir))
    run = RunDir(tmp_path / "loop")
    shutil.copytree(RunDir(tiny_run).tokens_dir, run.tokens_dir)
    trainer = TrackedTrainer(run, cfg)
    trainer.setup(read_data(run, cfg, read_json(run.tokens_meta)))
    vstream = read_npy(run.token_stream("val"), mmap=True)
    with Tracker(tmp_path / "tracked", trainer.model, val=vstream, steps=cfg.train.ckpt_steps(),
                 n_seqs=cfg.trace.n_seqs, seq_len=cfg.train.seq_len, seed=cfg.seed,
                 tokenizer=run.tokenizer, progress=False) as tracker:
        trainer.tracker = tracker
        trainer.resume()
        trainer.loop()
    assert not run.ckpt_dir.exists()  # the tracked loop wrote no checkpoint

    ref, got = RunDir(tiny_run), RunDir(tmp_path / "tracked")
    a, b = read_npy(ref.trace_loss), read_npy(got.trace_loss)
    assert a.shape == b.shape == (len(cfg.train.ckpt_steps()), 48 * 64)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    ax_ref, ax = read_parquet(ref.trace_axis), read_parquet(got.trace_axis)
    for col in ("step", "tokens_seen"):
        np.testing.assert_array_equal(ax[col], ax_ref[col])
    np.testing.assert_allclose(ax["cum_lr"], ax_ref["cum_lr"], rtol=1e-12)
    np.testing.assert_array_equal(read_npy(got.trace_inputs), read_npy(ref.trace_inputs))
    tok_ref, tok = read_parquet(ref.trace_tokens), read_parquet(got.trace_tokens)
    for col in ("sequence", "position", "token_id", "token_text", "context"):
        np.testing.assert_array_equal(tok[col], tok_ref[col])
    assert read_json(got.manifest)["stages"]["trace"]["status"] == "done"
    assert not got.lock.exists()
