"""The reshape stage: pure sampling weights on synthetic profiles, schedules from a tiny reference
run (shape, range, determinism, `uniform` = the default order), training with a schedule, errors."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_overrides
from tokenclock.artifacts import read_npy
from tokenclock.cli import main
from tokenclock.errors import ConfigError, RunDirError
from tokenclock.stages.reshape.config import ReshapeConfig
from tokenclock.stages.reshape.profiles import build_schedule, log_fraction, sampling_weights
from tokenclock.stages.reshape.stage import _subset, reshape
from tokenclock.windows import batch_offsets

STEPS, BATCH, SEQ = 40, 8, 32


def synthetic_profiles(n_bins: int = 20) -> dict:
    """6 sequences: two learned early (bin 2), two mid (bin 10), two late (bin 18)."""
    hist = np.zeros((6, n_bins))
    for i, b in enumerate((2, 2, 10, 10, 18, 18)):
        hist[i, b] = 1.0
    ckpt_frac = np.linspace(0, 1, 5)
    # reducible loss: sequence 5 keeps 2 nats above its final loss, the others 0.5
    loss_seq = np.outer(1 - ckpt_frac, [0.5, 0.5, 0.5, 0.5, 0.5, 2.0]) + 3.0
    return {"learn_hist": hist, "learn_frac": (np.array([2, 2, 10, 10, 18, 18]) + 0.5) / n_bins,
            "loss_seq": loss_seq, "ckpt_frac": ckpt_frac}


def step_at(frac: float, total: int) -> float:
    return total ** frac - 1  # inverse of log_fraction


def test_learnable_now_oversamples_the_current_window():
    prof, total = synthetic_profiles(), 10_000
    for frac, hot in ((0.125, [0, 1]), (0.525, [2, 3]), (0.925, [4, 5])):
        w = sampling_weights(prof, [step_at(frac, total)], total, "learnable-now", window=0.2)[0]
        assert np.isclose(w.sum(), 1)
        assert np.allclose(w[hot], 0.5)
        assert np.allclose(np.delete(w, hot), 0)
    # a window holding no learning events falls back to uniform over the pool
    w = sampling_weights(prof, [step_at(0.3, total)], total, "learnable-now", window=0.1)[0]
    assert np.allclose(w, 1 / 6)
    assert np.isclose(log_fraction(step_at(0.3, total), total), 0.3)


def test_orderings_and_loss_based():
    prof, total = synthetic_profiles(), 100
    e2h = sampling_weights(prof, [0, total - 1], total, "easy-to-hard", window=0.34)
    h2e = sampling_weights(prof, [0, total - 1], total, "hard-to-easy", window=0.34)
    assert e2h[0, :2].sum() == pytest.approx(1) and e2h[1, 4:].sum() == pytest.approx(1)
    assert h2e[0, 4:].sum() == pytest.approx(1) and h2e[1, :2].sum() == pytest.approx(1)
    lb = sampling_weights(prof, [0, 10], total, "loss-based")
    assert (lb[:, 5] > 3 * lb[:, 0]).all()
    assert np.allclose(sampling_weights(prof, [3], total, "uniform"), 1 / 6)
    sharp = sampling_weights(prof, [0], total, "loss-based", sharpness=2.0)[0]
    assert sharp[5] / sharp[0] == pytest.approx((lb[0, 5] / lb[0, 0]) ** 2)


def test_pool_checkpoints_are_log_spaced_in_step():
    # a demo-like series (16 per decade to 2,000): ten checkpoints cover every decade, the last kept
    steps = sorted({0, *np.unique(np.round(np.geomspace(1, 2000, 56)).astype(int)).tolist()})
    got = _subset(steps, 10)
    assert got[0] == 1 and got[-1] == 2000 and len(got) == 10 and got == sorted(got)
    gaps = np.diff(np.log(got))
    assert gaps.max() < 2 * np.log(2000) / 9  # no decade left empty (indices spaced twice gave 202 -> 2000)
    assert _subset([0, 1, 2, 3], 10) == [1, 2, 3]


def test_uniform_schedule_is_the_default_order():
    prof = synthetic_profiles()
    pool = np.arange(6, dtype=np.int64) * 33
    got = build_schedule(prof, pool, 5000, 25, 4, 32, seed=3, strategy="uniform")
    want = np.stack([batch_offsets(3, s, 5000, 4, 32) for s in range(25)])
    assert got.dtype == np.int64 and np.array_equal(got, want)
    mixed = build_schedule(prof, pool, 5000, 25, 4, 32, seed=3, strategy="learnable-now", mix=0.5)
    from_pool = np.isin(mixed, pool)
    assert 0.2 < from_pool.mean() < 0.8
    assert np.array_equal(mixed[~from_pool], want[~from_pool])  # the rest keeps the uniform order
    assert np.isin(build_schedule(prof, pool, 5000, 25, 4, 32, 3, "easy-to-hard", mix=0.0), pool).all()


@pytest.fixture(scope="module")
def ref_run(tmp_path_factory, texts_dir):
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    run = tmp_path_factory.mktemp("reshape") / "ref"
    cfg = load_config("tiny", tiny_overrides(texts_dir, **{
        "train.steps": STEPS, "train.batch_size": BATCH, "train.seq_len": SEQ,
        "train.ckpt_per_decade": 8, "train.warmup_steps": 4, "train.threads": 1}))
    train(run, cfg, progress=False)
    return run


def test_reshape_writes_a_deterministic_schedule(ref_run, tmp_path):
    cfg = ReshapeConfig(pool_size=64, max_ckpts=8)
    meta = reshape(ref_run, tmp_path / "a", cfg, progress=False)
    offs = read_npy(tmp_path / "a" / "offsets.npy")
    n_tokens = len(read_npy(ref_run / "tokens" / "train.npy", mmap=True))
    assert offs.shape == (STEPS, BATCH) and offs.dtype == np.int64
    assert offs.min() >= 0 and offs.max() <= n_tokens - SEQ - 1
    assert meta["pool_size"] == 64 and (tmp_path / "a" / "profiles.parquet").is_file()
    assert (ref_run / "reshape" / "pool" / "trace" / "loss.npy").is_file()
    reshape(ref_run, tmp_path / "b", cfg, progress=False)  # reuses the pool trace
    assert np.array_equal(offs, read_npy(tmp_path / "b" / "offsets.npy"))
    reshape(ref_run, tmp_path / "c", ReshapeConfig(pool_size=64, max_ckpts=8, seed=7), progress=False)
    assert not np.array_equal(offs, read_npy(tmp_path / "c" / "offsets.npy"))
    assert main(["reshape", str(ref_run), "--out", str(tmp_path / "u"), "--strategy", "uniform",
                 "--pool-size", "64", "--max-ckpts", "8", "--quiet"]) == 0
    want = np.stack([batch_offsets(0, s, n_tokens, BATCH, SEQ) for s in range(STEPS)])
    assert np.array_equal(read_npy(tmp_path / "u" / "offsets.npy"), want)


def test_training_with_a_schedule(ref_run, tmp_path, texts_dir, capsys):
    sched = tmp_path / "sched"
    assert main(["reshape", str(ref_run), "--out", str(sched), "--pool-size", "64", "--max-ckpts", "8",
                 "--steps", "12", "--quiet"]) == 0
    sets = tiny_overrides(texts_dir, **{"train.steps": 12, "train.batch_size": BATCH, "train.seq_len": SEQ,
                                        "train.ckpt_per_decade": 2, "train.threads": 1,
                                        "train.data_schedule": sched})
    args = sum((["--set", s] for s in sets), [])
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "new"), "--quiet", *args]) == 0
    assert (tmp_path / "new" / "ckpt" / "step_0000012").is_dir()
    capsys.readouterr()
    assert main(["train", "--config", "tiny", "--out", str(tmp_path / "bad"), "--quiet", *args,
                 "--set", "train.batch_size=4"]) == ConfigError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "built for 12 steps x 8 x 32" in err and "trains 12 x 4 x 32" in err


def test_token_learnable_schedule_trains(ref_run, tmp_path, texts_dir):
    """token-learnable: pool windows drawn uniformly, their tokens weighted by the reference's
    events (float16, floor to 1), the new run trains with them and counts no zero-weight batch."""
    from tokenclock.config import load_config
    from tokenclock.pipeline import train

    sched = tmp_path / "tok"
    meta = reshape(ref_run, sched, ReshapeConfig(strategy="token-learnable", pool_size=64, max_ckpts=8,
                                                 steps=12, token_floor=0.2), progress=False)
    w = read_npy(sched / "weights.npy")
    assert w.shape == (12, BATCH, SEQ) and w.dtype == np.float16
    assert w.min() >= np.float16(0.2) - 1e-3 and w.max() <= 1 and w.std() > 0
    assert meta["token_weights"]["zero_weight_batches"] == 0 and 0 <= meta["proxy_censored_share"] <= 1
    assert meta["pool_repetition"]["max_draws"] >= 1 and len(meta["tokenizer_sha256"]) == 64
    cfg = load_config("tiny", tiny_overrides(texts_dir, **{
        "train.steps": 12, "train.batch_size": BATCH, "train.seq_len": SEQ, "train.ckpt_per_decade": 2,
        "train.threads": 1, "train.data_schedule": sched}))
    summary = train(tmp_path / "new", cfg, progress=False)
    assert summary["token_weights"]["zero_weight_batches"] == 0
    reshape(ref_run, sched, ReshapeConfig(strategy="learnable-now", pool_size=64, max_ckpts=8, steps=12),
            progress=False)
    assert not (sched / "weights.npy").exists()  # a sequence-level schedule drops the old weights


def test_bad_input(ref_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reshape", str(tmp_path / "empty"), "--out", str(tmp_path / "s"), "--quiet"]) == RunDirError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no checkpoints" in err and "train the reference" in err
    assert main(["reshape", str(ref_run), "--out", str(tmp_path / "s"), "--pool-size", "10000000",
                 "--quiet"]) == ConfigError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "larger than the" in err and "--pool-size" in err
    assert not (tmp_path / "s").exists()
    with pytest.raises(ConfigError, match="unknown reshape strategy"):
        ReshapeConfig(strategy="random")
    with pytest.raises(ConfigError, match="mix"):
        ReshapeConfig(mix=1.5)
