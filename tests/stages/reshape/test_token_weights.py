"""Token-level learnability weights (token-learnable): the weights of known events, a schedule's
weight array, and the trainer's weighted loss (all ones = the plain mean; an all-zero batch trains
on uniform weights and is counted)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import tiny_overrides
from tokenclock.artifacts import read_json, read_npy, write_npy
from tokenclock.curves import logistic_prime
from tokenclock.errors import ConfigError
from tokenclock.rundir import RunDir
from tokenclock.stages.reshape.config import ReshapeConfig
from tokenclock.stages.reshape.profiles import (
    censored_share,
    relevance,
    schedule_weights,
    token_events,
    token_weight,
    zero_weight_batches,
)
from tokenclock.windows import batch_offsets

U_TOP = math.log(1000)


def known_events() -> dict:
    """4 tokens: 0 learned at fraction 0.2 (1 nat), 1 at 0.8 (1 nat) with a rise before it, 2 with no
    event, 3 a small drop (0.1 nats) at 0.5; fractions of ln(1000), widths 0.01 of it."""
    frac = np.array([0.2, 0.1, 0.8, 0.5])
    return {"tok_idx": np.array([0, 1, 1, 3]), "a": np.array([1.0, -0.5, 1.0, 0.1]),
            "mu": frac * U_TOP, "width": np.full(4, 0.01 * U_TOP)}


def test_weights_follow_the_learning_events():
    ev = token_events(known_events(), 4, U_TOP)
    assert ev["a"].shape == (4, 2) and ev["a"][1].tolist() == [1.0, 0.0]  # the rise is no learning event
    idx = np.arange(4)
    window, floor, drop = 0.2, 0.1, 0.5
    w = token_weight(relevance(ev, idx, 0.2, window, drop), floor)
    h = window / 2  # the events are narrower than the window: its half-width is theirs
    assert w[0] == pytest.approx(1.0)  # at its learning time: the full weight
    assert w[1] == pytest.approx(floor + (1 - floor) * 4 * logistic_prime(0.6 / h), rel=1e-5)
    assert w[2] == pytest.approx(floor)  # never learned: the floor
    w_mid = token_weight(relevance(ev, idx, 0.5, window, drop), floor)
    assert w_mid[3] == pytest.approx(floor + (1 - floor) * 0.1 / drop)  # a small drop weighs less
    late = token_weight(relevance(ev, idx, 1.0, window, drop), floor)
    assert late[0] < floor + 2e-3  # already learned: back at the floor
    assert (token_weight(relevance(ev, idx, 1.0, window, drop), 0.0)[[0, 2]] < 2e-3).all()  # floor 0 allowed
    assert censored_share({"a": np.array([1.0, 1, -1]), "mu": np.array([1.0, 6.8, 7.0])},
                          np.log([10.0, 100, 1000])) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="token_floor"):
        ReshapeConfig(token_floor=1.5)


def test_schedule_weights_score_pool_slots_and_fill_the_rest():
    seq_len = 4
    pool = np.array([0, 5, 10], dtype=np.int64)
    events = {"tok_idx": np.array([0, 4]), "a": np.array([1.0, 1.0]), "mu": np.array([0.0, U_TOP]),
              "width": np.full(2, 0.01)}
    ev = token_events(events, len(pool) * seq_len, U_TOP)
    offsets = np.array([[0, 5, 3], [10, 1, 2]])  # 3, 1, 2: the uniform order's (not in the pool)
    w = schedule_weights(offsets, pool, ev, np.array([0.0, 1.0]), seq_len, window=0.2, floor=0.25,
                         drop_nats=0.5)
    assert w.shape == (2, 3, seq_len) and w.dtype == np.float16
    assert w[0, 0, 0] == 1 and (w[0, 0, 1:] == 0.25).all() and w[0, 1, 0] == pytest.approx(0.25, abs=1e-3)
    assert w[0, 2] == pytest.approx(np.full(seq_len, w[0, :2].astype(np.float32).mean()), rel=1e-3)
    assert (w[1, 0] == 0.25).all() and (w[1, 1:] == 0.25).all()
    assert zero_weight_batches(np.zeros((3, 2, 2))) == 3 and zero_weight_batches(w) == 0


def _train(root, texts_dir, name: str, schedule=None) -> tuple[dict, np.ndarray]:
    from tokenclock.artifacts import read_parquet
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    extra = {"train.steps": 8, "train.batch_size": 4, "train.seq_len": 32, "train.ckpt_per_decade": 2,
             "train.threads": 1, "train.warmup_steps": 2}
    if schedule is not None:
        extra["train.data_schedule"] = schedule
    summary = train(root / name, load_config("tiny", tiny_overrides(texts_dir, **extra)), progress=False)
    return summary, read_parquet(RunDir(root / name).train_log)["loss"]


def test_trainer_weighted_loss(tmp_path, texts_dir):
    """Weights of 1 give the unweighted run's losses; all-zero batches train as uniform, counted."""
    base, loss = _train(tmp_path, texts_dir, "plain")
    assert "token_weights" not in base
    n_tokens = len(read_npy(RunDir(tmp_path / "plain").token_stream("train"), mmap=True))
    sched = tmp_path / "sched"
    sched.mkdir()
    write_npy(sched / "offsets.npy", np.stack([batch_offsets(0, s, n_tokens, 4, 32) for s in range(8)]))
    w = np.ones((8, 4, 32), dtype=np.float16)
    w[[2, 5]] = 0
    write_npy(sched / "weights.npy", w)
    summary, wloss = _train(tmp_path, texts_dir, "weighted", sched)
    assert summary["token_weights"]["zero_weight_batches"] == 2
    np.testing.assert_allclose(wloss, loss, rtol=1e-5)
    assert summary["final_val_loss"] == pytest.approx(base["final_val_loss"], rel=1e-5)
    m = read_json(RunDir(tmp_path / "weighted").manifest)["stages"]["train"]["summary"]
    assert m["token_weights"]["zero_weight_batches"] == 2
    # weights that differ change the gradient, not the logged (plain mean) loss of the first step
    w2 = np.ones((8, 4, 32), dtype=np.float16)
    w2[:, :, 16:] = 0.1
    write_npy(sched / "weights.npy", w2)
    _, loss2 = _train(tmp_path, texts_dir, "reweighted", sched)
    assert loss2[0] == pytest.approx(loss[0], rel=1e-6) and not np.allclose(loss2[2:], loss[2:], rtol=1e-6)
