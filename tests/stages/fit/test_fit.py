import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from tokenclock.artifacts import read_parquet, write_npy, write_parquet
from tokenclock.curves import curve
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.rundir import RunDir
from tokenclock.stages.fit.config import FitConfig
from tokenclock.stages.fit.fitter import fit_matrix, fit_trajectories
from tokenclock.stages.fit.models import CLASSES
from tokenclock.stages.fit.stage import fit, load_axis

STEPS = np.unique(np.geomspace(10, 20_000, 48).round())
U = np.log(STEPS)
LN_V = np.log(4096)


def noisy(curves, sd=0.08, seed=0):
    rng = np.random.default_rng(seed)
    Y = np.asarray(curves, dtype=float)
    return Y + rng.normal(0, sd, Y.shape)


def test_recovers_known_sigmoids():
    rng = np.random.default_rng(1)
    n = 300
    b, a = rng.uniform(1, 4, n), rng.uniform(1.5, 4, n)
    mu, w = rng.uniform(4, 8, n), rng.uniform(0.15, 0.5, n)
    Y = noisy([curve(U, *p) for p in zip(b, a[:, None], mu[:, None], w[:, None])], seed=2)
    res = fit_trajectories(Y, U, FitConfig(max_events=1))
    ev = res.events
    assert_allclose(ev["tok_idx"], np.arange(n))
    assert_allclose(ev["mu"], mu, atol=0.2)
    assert_allclose(ev["a"], a, rtol=0.1)
    assert_allclose(res.tokens["b"], b, atol=0.15)
    assert (res.tokens["class"] == "learned").mean() > 0.95
    assert np.median(res.tokens["r2"]) > 0.98


def _shapes():
    """One curve per expected class: (name, curve, class, n_events)."""
    return [
        ("flat", np.full_like(U, 5.0), "flat", 0),
        ("learned", curve(U, 2.0, [4.0], [6.5], [0.3]), "learned", 1),
        ("forgetting", curve(U, 4.0, [-2.0], [6.0], [0.3]), "forgotten", 1),
        ("rise-then-fall", curve(U, 4.0, [-1.5, LN_V + 1.5 - 4.0], [4.5, 7.5], [0.2, 0.25]),
         "rise-then-fall", 2),
        ("two-step", curve(U, 2.0, [3.0, 3.0], [4.5, 8.0], [0.2, 0.2]), "learned", 2),
        ("early", curve(U, 3.0, [4.0], [2.0], [0.5]), "early", 1),
        ("late", curve(U, 3.0, [3.0], [10.2], [0.3]), "late", 1),
    ]


def test_classes_and_event_counts():
    shapes = _shapes()
    Y = noisy([np.repeat(c[None], 5, 0) for _, c, _, _ in shapes], sd=0.05, seed=3).reshape(-1, len(U))
    res = fit_trajectories(Y, U, FitConfig())
    cls = res.tokens["class"].reshape(len(shapes), 5)
    nev = res.tokens["n_events"].reshape(len(shapes), 5)
    for i, (name, _, want, n_ev) in enumerate(shapes):
        assert (cls[i] == want).all(), (name, cls[i])
        if name not in ("flat", "early", "late"):
            assert (nev[i] == n_ev).all(), (name, nev[i])
    ok = set(res.summary["class_share"]) == set(CLASSES)
    assert ok and abs(sum(res.summary["class_share"].values()) - 1) < 1e-9


def test_two_events_recovered():
    Y = noisy(np.repeat(curve(U, 2.0, [2.5, 2.0], [4.5, 8.0], [0.2, 0.3])[None], 20, 0), seed=4)
    res = fit_trajectories(Y, U, FitConfig(uncertainty=True))
    mu = res.events["mu"].reshape(20, 2)
    assert_allclose(np.median(mu, 0), [4.5, 8.0], atol=0.1)
    assert_allclose(np.median(res.events["a"].reshape(20, 2), 0), [2.5, 2.0], rtol=0.1)
    se = res.events["mu_se"]
    assert np.isfinite(se).all() and (se > 0).all() and np.median(se) < 0.2


def test_noisy_irregular():
    rng = np.random.default_rng(5)
    Y = rng.normal(5, 1.5, (10, len(U)))
    res = fit_trajectories(Y, U, FitConfig())
    assert (res.tokens["class"] == "irregular").mean() >= 0.8


def test_bad_input_errors():
    Y = noisy(np.repeat(curve(U, 2.0, [3.0], [6.0], [0.3])[None], 4, 0))
    Y[1, 3] = np.nan
    Y[2, 5] = np.inf
    with pytest.raises(DataError, match="2 NaN/inf"):
        fit_trajectories(Y, U)
    with pytest.raises(DataError, match="at least 4"):
        fit_trajectories(Y[:, :3], U[:3])
    with pytest.raises(DataError, match="strictly increasing"):
        fit_trajectories(Y[:1, :8], U[:8][::-1])
    with pytest.raises(DataError, match="checkpoints"):
        fit_trajectories(Y[:1], U[:-1])
    with pytest.raises(ConfigError):
        FitConfig(max_events=3)
    with pytest.raises(ConfigError):
        FitConfig(w_min_frac=0.6)


def test_fit_matrix_memmap_equals_in_memory(tmp_path):
    rng = np.random.default_rng(6)
    n = 257
    Y = noisy([curve(U, 2.0, [rng.uniform(1, 4)], [rng.uniform(4, 9)], [0.3]) for _ in range(n)])
    Y = Y.astype(np.float32)
    write_npy(tmp_path / "loss.npy", Y.T)
    mm = np.load(tmp_path / "loss.npy", mmap_mode="r")
    # same chunking: identical arithmetic (float32 batches of another size round differently)
    a = fit_trajectories(Y, U, FitConfig(chunk_tokens=100))
    b = fit_matrix(mm, U, FitConfig(chunk_tokens=100), progress=False)
    for k in ("b", "r2", "sse", "n_events"):
        assert_allclose(b.tokens[k], a.tokens[k], rtol=1e-5, atol=1e-6)
    assert (b.tokens["class"] == a.tokens["class"]).all()
    assert_allclose(b.events["mu"], a.events["mu"], rtol=1e-5, atol=1e-6)
    assert_allclose(b.tokens["tok_idx"], np.arange(n))


def _tiny_run(root, n=40):
    run = RunDir(root)
    steps = np.r_[0, STEPS].astype(np.int64)
    rng = np.random.default_rng(7)
    cols = [curve(U, 2.0, [rng.uniform(1, 4)], [rng.uniform(4, 9)], [0.3]) for _ in range(n)]
    Y = noisy(cols, seed=8).T.astype(np.float32)               # (K, N)
    Y = np.vstack([np.full((1, n), LN_V, np.float32), Y])       # step 0 row: dropped on a log axis
    write_npy(run.trace_loss, Y)
    write_parquet(run.trace_axis, {"step": steps, "tokens_seen": steps * 4096,
                                   "cum_lr": np.cumsum(np.full(len(steps), 1e-3)),
                                   "val_loss": np.full(len(steps), np.nan)})
    return run


def test_fit_stage_writes_artifacts(tmp_path):
    run = _tiny_run(tmp_path / "run")
    summary = fit(run.root, FitConfig(extra_axes=["cum_lr", "nope"]), progress=False)
    assert summary["n_tok"] == 40 and summary["axis"] == "step"
    ev = read_parquet(run.fit_events)
    tok = read_parquet(run.fit_tokens)
    assert {"tok_idx", "a", "mu", "width"} <= set(ev)
    assert {"tok_idx", "b", "n_events", "r2", "sse", "class", "model", "bic_gap"} <= set(tok)
    assert len(tok["tok_idx"]) == 40 and len(ev["tok_idx"]) == tok["n_events"].sum()
    assert json.loads(run.fit_summary.read_text())["n_ckpt"] == len(STEPS)
    assert (run.fit_dir / "cum_lr" / "summary.json").is_file()
    assert not (run.fit_dir / "nope").exists()
    m = json.loads(run.manifest.read_text())
    assert m["stages"]["fit"]["status"] == "done"
    u, keep = load_axis(run, "step")
    assert not keep[0] and keep[1:].all()
    assert_allclose(u, U)


def test_fit_stage_errors(tmp_path):
    with pytest.raises(RunDirError, match="tokenclock trace"):
        fit(tmp_path / "empty", progress=False)
    run = _tiny_run(tmp_path / "run", n=3)
    with pytest.raises(ConfigError, match="cum_lr"):
        load_axis(run, "D")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=12, max_size=12))
def test_any_finite_trajectory_gives_finite_parameters_or_irregular(values):
    u = np.log(np.geomspace(1, 1000, 12))
    res = fit_trajectories(np.array([values]), u)
    t = res.tokens
    finite = all(np.isfinite(t[k]).all() for k in ("b", "r2", "sse")) and all(
        np.isfinite(res.events[k]).all() for k in ("a", "mu", "width"))
    assert finite or t["class"][0] == "irregular"
    assert t["class"][0] in CLASSES


def test_linear_drift_is_irregular_with_its_slope():
    """A steady 2-nat drift in ln x: the linear model wins by BIC, its slope is stored, and the
    class is irregular (a significant change that no sigmoid explains), not flat."""
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.fitter import fit_trajectories

    u = np.linspace(0, 8, 40)
    rng = np.random.default_rng(0)
    Y = 6.0 - 0.25 * u + rng.normal(0, 0.05, (20, 40))
    res = fit_trajectories(Y, u, FitConfig(extra_axes=[]))
    lin = res.tokens["model"] == "linear"
    assert lin.mean() >= 0.7  # a very wide sigmoid can tie with a line on a noisy row
    np.testing.assert_allclose(res.tokens["c"][lin], -0.25, atol=0.02)
    np.testing.assert_allclose(res.tokens["b"][lin], 6.0 - 0.25 * 8, atol=0.05)
    assert set(res.tokens["class"][lin]) == {"irregular"}
    assert not (res.tokens["c"][~lin]).any()


def test_worker_processes_give_identical_results():
    """Chunks fitted in 2 spawned processes equal the in-process fit, value for value."""
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.fitter import fit_trajectories

    rng = np.random.default_rng(3)
    u = np.log(np.arange(1, 33, dtype=np.float64))
    mu = rng.uniform(1, 3, 240)
    Y = 3 + 4 / (1 + np.exp((u[None, :] - mu[:, None]) / 0.3)) + rng.normal(0, 0.1, (240, 32))
    one = fit_trajectories(Y, u, FitConfig(extra_axes=[], chunk_tokens=40, workers=1))
    two = fit_trajectories(Y, u, FitConfig(extra_axes=[], chunk_tokens=40, workers=2))
    for k in one.tokens:
        np.testing.assert_array_equal(one.tokens[k], two.tokens[k], err_msg=k)
    for k in one.events:
        np.testing.assert_array_equal(one.events[k], two.events[k], err_msg=k)
