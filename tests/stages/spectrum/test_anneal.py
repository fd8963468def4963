"""The annealing term shared by every token (stages/spectrum/anneal.py) and the benchmark that puts
it beside the per-token events (benchmarks/anneal_term.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from tokenclock.artifacts import read_npy
from tokenclock.errors import DataError
from tokenclock.rundir import RunDir
from tokenclock.stages.spectrum.anneal import fit_mean_law, lr_per_update, schedule_areas
from tokenclock.testing import load_script

COSINE = {"schedule": "cosine", "lr_peak": 3e-3, "steps": 1000, "warmup_steps": 50, "lr_min_ratio": 0.1}


def test_the_annealing_area_without_momentum_is_the_lr_decrease():
    lrs = lr_per_update(COSINE, 1000)
    steps = np.array([0, 10, 50, 100, 400, 700, 999])
    s1, s2 = schedule_areas(lrs, steps, lam=0.0)
    peak = lrs.max()
    after = steps >= 50
    np.testing.assert_allclose(s2[after], 1 - lrs[steps[after] - 1] / peak, atol=1e-12)  # the last lr used
    assert (s2[~after] == 0).all()                                   # warmup adds nothing
    np.testing.assert_allclose(s1, [lrs[:s].sum() / peak for s in steps])
    wsd = lr_per_update({**COSINE, "schedule": "wsd", "decay_fraction": 0.2}, 1000)
    assert (schedule_areas(wsd, np.arange(0, 800, 50), 0.999)[1] == 0).all()   # stable phase: no annealing


def test_the_mean_law_recovers_a_planted_annealing_drop():
    lrs = lr_per_update(COSINE, 1000)
    steps = np.unique(np.geomspace(1, 1000, 40).round()).astype(int)
    s1, s2 = schedule_areas(lrs, steps, 0.9)
    L = 2.0 + 5.0 * np.maximum(s1, 1e-9) ** -0.4 - 0.05 * s2
    fit = fit_mean_law(L, steps, lrs, steps >= 50)
    assert fit["momentum"] == 0.9 and fit["r2"] > 0.9999
    assert fit["C"] == pytest.approx(0.05, rel=0.05) and fit["alpha"] == pytest.approx(0.4, rel=0.05)
    no_anneal = fit_mean_law(2.0 + 5.0 * np.maximum(s1, 1e-9) ** -0.4, steps, lrs, steps >= 50)
    assert no_anneal["C"] * no_anneal["s2"][-1] < 1e-3
    with pytest.raises(DataError, match=">= 5 checkpoints"):
        fit_mean_law(L, steps, lrs, steps >= 900)


def test_benchmark_puts_the_shared_term_beside_the_plain_fit(tiny_run, tmp_path, capsys):
    module = load_script(Path(__file__).parents[3] / "benchmarks" / "anneal_term.py")
    loss = RunDir(tiny_run).trace_loss
    before = read_npy(loss).copy()
    assert module.main(["--run", str(tiny_run), "--weights", "raw", "--out", str(tmp_path / "a"),
                        "--set", "fit.max_events=3"]) == 0
    r = json.loads((tmp_path / "a" / "anneal_term.json").read_text())["series"]["raw"]
    assert r["measured_identity_max_error"] < 1e-4        # measured = events' part + shared part
    assert r["events_share_of_drop"] + r["shared_term_share_of_drop"] == pytest.approx(1)
    assert r["fit_config"]["max_events"] == 3 and r["law"]["C"] >= 0
    assert set(r["scores"]) == {"plain", "shared_term"}
    np.testing.assert_array_equal(read_npy(loss), before)  # the run's own trace is never changed
    out = capsys.readouterr().out
    assert "+ shared" in out and "shared term" in out
