"""Averaged weights (train.avg=ema): the power-function EMA's math, the ckpt_avg/ series (Hugging
Face folders), resume after kill -9 bit for bit, branches and zooms carrying the average, and the
averaged series traced, fitted and reconstructed beside the raw one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import tiny_overrides
from tokenclock.config import load_config
from tokenclock.errors import ConfigError
from tokenclock.rundir import RunDir
from tokenclock.stages.train.average import WeightAverage, gamma_for, lag_ln, sigma_rel_of

AVG = {"train.steps": 60, "train.ckpt_per_decade": 8, "train.avg": "ema", "train.keep_state_steps": "[5]"}


def test_gamma_matches_edm2():
    # EDM2 (Karras et al. 2024): sigma_rel 0.05 -> gamma 16.97, 0.10 -> 6.94
    assert gamma_for(0.05) == pytest.approx(16.97, abs=0.01)
    assert gamma_for(0.10) == pytest.approx(6.94, abs=0.01)
    for s in (0.02, 0.1, 0.2):
        assert sigma_rel_of(gamma_for(s)) == pytest.approx(s, rel=1e-9)
    assert lag_ln(gamma_for(0.1)) == pytest.approx(np.log(8.94 / 7.94), abs=1e-3)


def test_ema_is_the_power_weighted_average():
    """After T updates, the average is sum_t t^gamma theta_t / sum_t t^gamma (the profile the
    beta_t = (1 - 1/t)^(gamma + 1) recursion approximates; exact up to the discretisation of t)."""
    import torch

    model = torch.nn.Linear(3, 1, bias=False)
    avg = WeightAverage(model, 0.1)
    assert avg.beta(1) == 0.0
    rng = np.random.default_rng(0)
    thetas = rng.normal(size=(400, 3))
    for t, th in enumerate(thetas, 1):
        with torch.no_grad():
            model.weight.copy_(torch.tensor(th[None, :], dtype=torch.float32))
        avg.update(t)
    # the recursion is the average with weights w_t = prod_{s>t} beta_s (1 - beta_t)
    betas = np.array([avg.beta(t) for t in range(1, 401)])
    w = (1 - betas) * np.concatenate([np.cumprod(betas[::-1])[::-1][1:], [1.0]])
    np.testing.assert_allclose(avg.model.weight.detach().numpy()[0], w @ thetas / w.sum(), rtol=1e-4, atol=1e-5)
    assert w.sum() == pytest.approx(1.0)
    # and those weights follow t^gamma (relative std sigma_rel of the profile)
    t = np.arange(1, 401)
    mean = (w * t).sum()
    assert np.sqrt((w * (t - mean) ** 2).sum()) / 400 == pytest.approx(0.1, rel=0.03)


def _cmd(out, texts_dir, extra=()):
    sets = tiny_overrides(texts_dir, **AVG) + list(extra)
    return [sys.executable, "-m", "tokenclock", "train", "--config", "tiny", "--out", str(out), "--quiet",
            *sum((["--set", s] for s in sets), [])]


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_averaged_checkpoints_resume_bit_identically(tmp_path, texts_dir):
    """ckpt_avg/ holds every checkpoint as a Hugging Face folder; step 0's average is the init;
    a run killed (-9) mid-training and resumed ends with the same raw and averaged weights."""
    from transformers import AutoModelForCausalLM

    env = dict(os.environ, HF_HUB_OFFLINE="1")
    ref, killed = RunDir(tmp_path / "ref"), RunDir(tmp_path / "killed")
    subprocess.run(_cmd(ref.root, texts_dir), check=True, env=env, capture_output=True)
    avg = ref.series("avg")
    assert avg.ckpt_steps() == ref.ckpt_steps()
    assert _equal(_weights(avg.ckpt(0)), _weights(ref.ckpt(0)))
    last = ref.ckpt_steps()[-1]
    assert not _equal(_weights(avg.ckpt(last)), _weights(ref.ckpt(last)))
    model = AutoModelForCausalLM.from_pretrained(avg.ckpt(last))
    assert model.config.model_type == "llama"
    proc = subprocess.Popen(_cmd(killed.root, texts_dir), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(killed.series("avg").ckpt_steps()) < 9 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(killed.ckpt_steps()) < len(ref.ckpt_steps()), "the kill came too late to test resuming"
    subprocess.run(_cmd(killed.root, texts_dir), check=True, env=env, capture_output=True)
    for s in ref.ckpt_steps():
        assert _equal(_weights(avg.ckpt(s)), _weights(killed.series("avg").ckpt(s))), s
    assert _equal(_weights(ref.ckpt(last)), _weights(killed.ckpt(last)))


def test_averaging_changes_no_raw_weight_and_zoom_replays_it(tmp_path, texts_dir):
    """train.avg leaves the raw weights as they are; a zoom replays the average bit for bit and
    adds averaged checkpoints beside the new raw ones."""
    from tokenclock.pipeline import train

    base = {k: v for k, v in AVG.items() if k != "train.avg"}
    plain, run = RunDir(tmp_path / "plain"), RunDir(tmp_path / "avg")
    train(plain.root, load_config("tiny", tiny_overrides(texts_dir, **base)), progress=False)
    sets = tiny_overrides(texts_dir, **AVG)
    train(run.root, load_config("tiny", sets), progress=False)
    for s in plain.ckpt_steps():
        assert _equal(_weights(plain.ckpt(s)), _weights(run.ckpt(s))), s
    z = train(run.root, load_config("tiny", sets + ["train.zoom=[6,30]"]), progress=False)["zoom"]
    assert z["matched_steps"] and z["new_steps"]
    assert run.series("avg").ckpt_steps() == run.ckpt_steps()
    straight = RunDir(tmp_path / "straight")
    extra = f"train.extra_ckpt_steps=[{','.join(map(str, z['new_steps']))}]"
    train(straight.root, load_config("tiny", sets + [extra]), progress=False)
    for s in z["new_steps"]:
        assert _equal(_weights(run.series("avg").ckpt(s)), _weights(straight.series("avg").ckpt(s))), s


def test_avg_options_are_checked():
    with pytest.raises(ConfigError, match="unknown train.avg"):
        load_config("tiny", ["train.avg=lawa"])
    with pytest.raises(ConfigError, match="avg_sigma_rel"):
        load_config("tiny", ["train.avg_sigma_rel=0.5"])
    with pytest.raises(ConfigError, match="trace.weights"):
        load_config("tiny", ["trace.weights=mean"])
