"""Spectrum: known-answer math (reconstruction, power laws, density) and the stage's artifacts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tokenclock import scores
from tokenclock.artifacts import write_json, write_npy, write_parquet
from tokenclock.curves import logistic
from tokenclock.errors import ConfigError, DataError, RunDirError
from tokenclock.manifest import update_stage
from tokenclock.rundir import RunDir
from tokenclock.stages.spectrum import reconstruct as rc
from tokenclock.stages.spectrum import stage as sp

SUMMARY_KEYS = {"reconstruction_r2", "reconstruction_r2_heldout", "reconstruction_r2_after_warmup",
                "reconstruction_r2_heldout_after_warmup", "mean_rel_error", "event_share",
                "alpha_measured", "alpha_spectrum", "E", "A", "axis", "n_tok", "n_events"}


def draw_events(rng, n_tok, u, second=0.5, rise=0.1):
    """Events from a known spectrum: mu ~ normal inside the window, a ~ lognormal (a share of them
    rises), widths uniform; every token has one event and a share of tokens a second one."""
    n2 = int(second * n_tok)
    tok = np.concatenate([np.arange(n_tok), rng.choice(n_tok, n2, replace=False)])
    ne = len(tok)
    span = u[-1] - u[0]
    mu = rng.normal(u[0] + 0.5 * span, 0.18 * span, ne)
    a = rng.lognormal(-0.5, 0.5, ne) * np.where(rng.random(ne) < rise, -0.5, 1.0)
    w = rng.uniform(0.03, 0.12, ne) * span
    return {"tok_idx": tok.astype(np.int64), "a": a, "mu": mu, "width": w}


def synth_matrix(events, b, u, noise=0.0, rng=None):
    """(K, N) loss matrix of the token curves l_i(u) = b_i + sum_j a_j s((mu_j - u) / w_j)."""
    L = np.tile(np.asarray(b, np.float64), (len(u), 1))
    z = (events["mu"][None, :] - u[:, None]) / events["width"][None, :]        # (K, E)
    contrib = events["a"][None, :] * logistic(z)
    for k in range(len(u)):
        L[k] += np.bincount(events["tok_idx"], weights=contrib[k], minlength=L.shape[1])
    if noise:
        L += noise * rng.standard_normal(L.shape)
    return L


# ----------------------------------------------------------------------------- math


def test_reconstruction_matches_measured_derivative():
    rng = np.random.default_rng(0)
    u = np.sort(np.log(np.geomspace(10, 20000, 48)) + rng.uniform(-0.03, 0.03, 48))  # non-uniform
    n_tok = 2000
    ev = draw_events(rng, n_tok, u)
    b = rng.uniform(1.0, 3.0, n_tok)
    loss = synth_matrix(ev, b, u).astype(np.float32)
    L = rc.measured_curve(loss, None, chunk_columns=300)               # several column chunks
    np.testing.assert_allclose(L, loss.astype(np.float64).mean(1), rtol=1e-9)
    np.testing.assert_allclose(rc.reconstruct_curve(b, ev, n_tok, u), L, atol=1e-5)
    rec = rc.reconstruct_derivative(ev, n_tok, u)
    for smooth in (0, 2):
        meas = rc.measured_derivative(L, u, smooth=smooth)
        assert scores.r2_score(rec, meas) > 0.99
        assert scores.mean_rel_error(rec, meas) < 0.05
    shares = rc.event_share(ev, n_tok, u, L)
    assert shares["event_share"] == pytest.approx(1.0, abs=1e-4)


def test_measured_curve_respects_keep_mask_and_rejects_nan():
    loss = np.arange(12, dtype=np.float32).reshape(4, 3)
    keep = np.array([False, True, False, True])
    np.testing.assert_allclose(rc.measured_curve(loss, keep, chunk_columns=2), [4.0, 10.0])
    loss[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        rc.measured_curve(loss, None)


def test_measured_derivative_exact_for_quadratics_on_uneven_grid():
    u = np.cumsum(np.random.default_rng(1).uniform(0.1, 0.4, 20))
    L = 3.0 - 0.7 * u + 0.05 * u * u
    np.testing.assert_allclose(rc.measured_derivative(L, u, smooth=3), 0.7 - 0.1 * u, atol=1e-9)
    with pytest.raises(DataError):
        rc.measured_derivative(L[::-1], u[::-1])


@pytest.mark.parametrize("E, A, alpha", [(2.0, 5.0, 0.3), (0.0, 3.0, 0.08), (1.2, 40.0, 0.55)])
def test_power_law_recovers_exponent(E, A, alpha):
    x = np.geomspace(10, 1e5, 40)
    L = E + A * x ** -alpha
    fit = scores.fit_power_law(x, L)
    assert fit["alpha"] == pytest.approx(alpha, rel=0.02)
    noisy = L * (1 + 0.002 * np.random.default_rng(2).standard_normal(len(x)))
    assert scores.fit_power_law(x, noisy)["alpha"] == pytest.approx(alpha, rel=0.1)


def test_density_integrates_to_mean_total_drop():
    rng = np.random.default_rng(3)
    u = np.linspace(2, 9, 30)
    ev = draw_events(rng, 500, u)
    grid = np.linspace(-3, 14, 4000)
    for h in (0.05, 0.3):
        rho = rc.spectrum_density(ev, 500, grid, h)
        assert np.sum(rho) * (grid[1] - grid[0]) == pytest.approx(ev["a"].sum() / 500, rel=1e-6)
    edges = np.linspace(-3, 14, 60)
    hist = rc.spectrum_histogram(ev, 500, edges)
    assert np.sum(hist * np.diff(edges)) == pytest.approx(ev["a"].sum() / 500, rel=1e-9)
    assert rc.silverman_bandwidth(ev, fallback=1.0) > 0


def test_config_invariants():
    with pytest.raises(ConfigError):
        sp.SpectrumConfig(smoothing=-1)
    with pytest.raises(ConfigError):
        sp.SpectrumConfig(bandwidth=0.0)
    with pytest.raises(ConfigError):
        sp.SpectrumConfig(n_grid=3)
    with pytest.raises(ConfigError):
        sp.SpectrumConfig(after_step=-5)


# ----------------------------------------------------------------------------- the stage


def make_run(root, axis_cols=("step", "tokens_seen", "cum_lr", "val_loss"), n_tok=300,
             warmup=20, fit_by_hand=True, noise=0.01, seed=0):
    """A tiny run dir: trace/loss.npy (K, N), trace/axis.parquet, and (optionally) fit outputs
    written by hand from the true events (primary clock = first axis column, plus cum_lr)."""
    rng = np.random.default_rng(seed)
    run = RunDir(root)
    steps = np.unique(np.r_[0, np.geomspace(1, 4000, 40).astype(np.int64)])      # (K,) incl. 0
    lr = np.where(np.arange(steps[-1] + 1) < warmup, np.arange(steps[-1] + 1) / warmup, 1.0) * 1e-3
    cum_lr = np.cumsum(lr)[steps] * (steps > 0)
    u = np.log(steps[1:])
    ev = draw_events(rng, n_tok, u)
    b = rng.uniform(1.0, 3.0, n_tok)
    loss = synth_matrix(ev, b, np.r_[u[0] - 1.0, u], noise, rng).astype(np.float32)
    write_npy(run.trace_loss, loss)
    cols = {"step": steps, "tokens_seen": steps * 512, "cum_lr": cum_lr,
            "val_loss": np.full(len(steps), np.nan)}
    if axis_cols[0] not in cols:  # an imported matrix: one column named by its axis
        cols = {axis_cols[0]: steps.astype(np.float64) * 1e6}
    write_parquet(run.trace_axis, {k: cols[k] for k in axis_cols})
    update_stage(run, "train", "done", config={"train": {"warmup_steps": warmup}})
    if fit_by_hand:
        tokens = {"tok_idx": np.arange(n_tok), "b": b,
                  "n_events": np.bincount(ev["tok_idx"], minlength=n_tok),
                  "r2": np.ones(n_tok), "sse": np.zeros(n_tok),
                  "class": np.array(["learned"] * n_tok, dtype=object),
                  "model": np.array(["sigmoid1"] * n_tok, dtype=object)}
        clocks = [axis_cols[0]] + (["cum_lr"] if "cum_lr" in axis_cols else [])
        for i, axis in enumerate(clocks):
            folder = run.fit_dir if i == 0 else run.fit_dir / axis
            write_parquet(folder / "events.parquet", ev)
            write_parquet(folder / "tokens.parquet", tokens)
            write_json(folder / "summary.json", {"n_tok": n_tok, "axis": axis})
    return run


def test_stage_writes_documented_files(tmp_path):
    run = make_run(tmp_path / "run")
    s = sp.spectrum(run.root, sp.SpectrumConfig(heldout=False), progress=False)
    out = run.spectrum_dir
    for name in ("curve.parquet", "density.parquet", "cum_lr_curve.parquet",
                 "cum_lr_density.parquet", "summary.json"):
        assert (out / name).is_file(), name
    on_disk = json.loads(run.spectrum_summary.read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert set(on_disk["clocks"]) == {"step", "cum_lr"}
    assert on_disk["best_clock"] in on_disk["clocks"]
    assert SUMMARY_KEYS <= set(on_disk["clocks"]["cum_lr"])
    assert s["axis"] == "step" and s["n_tok"] == 300 and s["after_step"] == 20
    assert s["reconstruction_r2"] > 0.95 and s["reconstruction_r2_after_warmup"] > 0.95
    assert s["event_share"] == pytest.approx(1.0, abs=0.05)
    from tokenclock.artifacts import read_parquet
    from tokenclock.manifest import load_manifest
    curve = read_parquet(out / "curve.parquet")
    assert {"x", "u", "loss_mean", "dldu_measured", "dldu_reconstructed", "loss_reconstructed",
            "heldout", "after_warmup", "step"} <= set(curve)
    k_kept = len(curve["u"])
    assert k_kept == np.load(run.trace_loss, mmap_mode="r").shape[0] - 1  # step 0 dropped
    assert not curve["heldout"].any()  # no held-out fit was asked for
    assert (curve["after_warmup"] == (curve["step"] >= 20)).all()
    assert set(read_parquet(out / "density.parquet")) >= {"u", "rho"}
    assert load_manifest(run)["stages"]["spectrum"]["status"] == "done"


def test_stage_on_imported_npz_axis(tmp_path):
    run = make_run(tmp_path / "npz", axis_cols=("D",))
    s = sp.spectrum(run, sp.SpectrumConfig(heldout=False), progress=False)
    assert s["axis"] == "D" and set(s["clocks"]) == {"D"} and s["after_step"] is None
    assert s["reconstruction_r2_after_warmup"] == s["reconstruction_r2"]
    assert (run.spectrum_dir / "curve.parquet").is_file()


def test_missing_fit_is_a_clear_error(tmp_path):
    run = make_run(tmp_path / "nofit", fit_by_hand=False)
    with pytest.raises(RunDirError, match="tokenclock fit"):
        sp.spectrum(run, progress=False)


def test_heldout_reconstruction_through_the_real_fit_stage(tmp_path):
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.stage import fit

    run = make_run(tmp_path / "held", n_tok=400, fit_by_hand=False, noise=0.03)
    fit(run, FitConfig(), progress=False)                       # writes fit/ and fit/cum_lr/
    s = sp.spectrum(run, sp.SpectrumConfig(after_step=100), progress=False)
    assert set(s["clocks"]) == {"step", "cum_lr"} and s["best_clock"] in s["clocks"]
    for c in s["clocks"].values():
        assert c["reconstruction_r2_heldout"] > 0.9
        assert c["reconstruction_r2_heldout_after_warmup"] > 0.9
        assert c["n_events_heldout_fit"] > 0
    from tokenclock.artifacts import read_parquet
    curve = read_parquet(run.spectrum_dir / "curve.parquet")
    assert s["n_ckpt_after_warmup"] == int((curve["step"] >= 100).sum())
    assert curve["heldout"].sum() == len(curve["u"]) // 2 and np.isfinite(curve["dldu_heldout"]).all()
    # The window density integrates to the drop the events make inside the observed range.
    den = read_parquet(run.spectrum_dir / "density.parquet")
    du = den["u"][1] - den["u"][0]
    assert np.sum(den["rho_window"]) * du == pytest.approx(s["event_drop_nats"], rel=0.02)


def test_nonfinite_events_are_dropped_and_counted(tmp_path):
    run = make_run(tmp_path / "bad")
    from tokenclock.artifacts import read_parquet
    ev = read_parquet(run.fit_events)
    ev["mu"] = ev["mu"].copy()
    ev["mu"][:3] = np.nan
    write_parquet(run.fit_events, ev)
    s = sp.spectrum(run, sp.SpectrumConfig(heldout=False), progress=False)
    assert s["n_events_nonfinite_dropped"] == 3
    assert s["n_events"] == len(ev["a"]) - 3
