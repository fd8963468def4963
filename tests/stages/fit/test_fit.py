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
        FitConfig(max_events=4)  # 0-3 events per token
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


# ----------------------------------------------------------------------------- width floor (issue 18)


def test_sharp_steps_are_unresolved_and_wide_ones_resolved():
    """Steps narrower than the checkpoint spacing come back resolved = False, wide ones True, and
    the summary's shares count them (known answers: 20 of 40 events, their share of |a|)."""
    du = float(np.diff(U)[-1])                                  # log-spaced: du is constant late
    rng = np.random.default_rng(11)
    n = 20
    mu = rng.uniform(5, 8.5, 2 * n)
    w = np.r_[np.full(n, 0.25 * du), np.full(n, 3.0 * du)]
    a = np.r_[np.full(n, 3.0), np.full(n, 1.5)]
    Y = noisy([curve(U, 2.0, [ai], [mi], [wi]) for ai, mi, wi in zip(a, mu, w)], sd=0.03, seed=12)
    res = fit_trajectories(Y, U, FitConfig(max_events=1, extra_axes=[]))
    ev = res.events
    assert ev["resolved"].dtype == bool and all(len(v) == 2 * n for v in ev.values())
    assert not ev["resolved"][:n].any() and ev["resolved"][n:].all()
    assert_allclose(ev["width"][n:], w[n:], rtol=0.25)          # wide steps: the width is measured
    s = res.summary["resolution"]
    assert s["n_unresolved"] == n and s["unresolved_event_share"] == 0.5
    assert s["unresolved_amplitude_share"] == pytest.approx(
        np.abs(ev["a"][:n]).sum() / np.abs(ev["a"]).sum())
    assert s["unresolved_amplitude_share"] == pytest.approx(2 / 3, abs=0.03)
    assert s["resolved_width_quantiles"]["q50"] == pytest.approx(3 * du, rel=0.2)
    bins = s["bins"]
    assert len(bins["n_events"]) == 10 and sum(bins["n_events"]) == 2 * n
    assert len(bins["u_edges"]) == 11 and bins["u_edges"][0] == U[0]
    f = res.summary["width_floor"]
    assert f["rule"] == "spacing" and f["w_min_spacing"] == FitConfig().w_min_spacing


def test_resolution_summary_known_answer():
    from tokenclock.stages.fit.resolution import resolution_summary

    u = np.linspace(0, 10, 11)                                  # spacing 1 everywhere
    s = resolution_summary(u, a=[1.0, -1.0, 3.0, 2.0, 5.0], mu=[0.5, 0.7, 5.5, 5.2, 12.0],
                           width=[0.5, 0.9, 2.0, 1.0, 4.0], n_bins=5)
    assert s["n_events"] == 5 and s["n_unresolved"] == 2 and s["n_after"] == 1
    assert s["unresolved_event_share"] == pytest.approx(0.4)
    assert s["unresolved_amplitude_share"] == pytest.approx(2 / 12)
    assert s["bins"]["n_events"] == [2, 0, 2, 0, 0]             # the event at 12 is outside
    assert s["bins"]["unresolved_event_share"] == [1.0, None, 0.0, None, None]
    assert s["bins"]["unresolved_amplitude_share"][0] == 1.0
    assert s["bins"]["spacing"] == [1.0] * 5
    assert s["resolved_width_quantiles"]["q50"] == pytest.approx(2.0)
    assert s["resolved_width_over_spacing_quantiles"]["q05"] == pytest.approx(1.1)  # of 1, 2, 4


def test_the_width_floor_follows_the_spacing():
    """Checkpoints 4x denser between u = 3 and 5: near-perfect steps there get a 4x smaller width
    than the same steps where checkpoints are sparse; no width is ever below the local floor. The
    span rule gives both the same floor."""
    from tokenclock.curves import width_floor

    u = np.unique(np.r_[np.linspace(0, 8, 33), np.linspace(3, 5, 33)].round(9))  # gaps 0.25, 0.0625
    mu = np.r_[np.full(6, 4.03), np.full(6, 6.6)]
    Y = noisy([curve(u, 2.0, [3.0], [m], [0.002]) for m in mu], sd=0.02, seed=13)
    cfg = FitConfig(max_events=1, extra_axes=[], w_min_spacing=0.1)
    ev = fit_trajectories(Y, u, cfg).events
    floor = width_floor(u, ev["mu"], 0.1)
    assert_allclose(floor, np.r_[np.full(6, 0.00625), np.full(6, 0.025)])
    assert (ev["width"] >= floor * (1 - 1e-6)).all()
    assert (ev["width"] <= 1.5 * floor).all()                  # sharper than the data: at the floor
    assert ev["width"][:6].max() < ev["width"][6:].min() / 2
    assert not ev["resolved"].any()
    span = fit_trajectories(Y, u, FitConfig(max_events=1, extra_axes=[], width_floor="span"))
    assert_allclose(span.events["width"], 0.02 * 8, rtol=1e-4)  # pinned at the one box floor
    assert span.summary["width_floor"]["rule"] == "span"


def test_width_floor_config_errors():
    with pytest.raises(ConfigError, match="width_floor"):
        FitConfig(width_floor="box")
    with pytest.raises(ConfigError, match="w_min_spacing"):
        FitConfig(w_min_spacing=0)
    with pytest.raises(ConfigError, match="w_min_spacing"):
        fit_trajectories(np.zeros((1, 8)), np.arange(8.0), FitConfig(w_min_spacing=5.0))


# Events of the `span` rule on golden_input(), computed with the fitter before issue 18 (commit
# c894969, dtype float64): the old rule must keep reproducing them.
GOLD_TOK_IDX = [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 11, 12, 12, 13, 13, 14, 15, 15, 16, 17,
    17, 18, 18, 19, 19, 20, 21, 22, 23, 23]
GOLD_A = [4.879471887, -1.709474024, 2.658643699, -0.6514290174, 1.404768288, -0.9373905694, 2.954041651,
    1.549467629, 5.084991105, -1.576242814, -1.109216908, 3.073089657, -1.012424046, 3.001334759,
    3.086611285, 3.410628602, 2.855269869, -0.9769671921, 2.999550945, 2.270318147, -0.787876131,
    -1.214967891, 4.924295869, 2.283840389, -1.002973338, 3.0171397, 2.150436378, 3.854488566,
    -1.150958994, -1.517392372, 4.690828613, -0.9554407047, 2.997907263, 3.303392548, 3.310344584,
    3.121310935, -0.966906962, 2.89981828]
GOLD_MU = [5.054894475, 5.115879378, 5.426626452, 5.448598922, 4.075095076, 4.781594132, 7.310702814,
    5.307698452, 4.299011675, 4.365197597, 5.980068381, 6.092003975, 4.968025602, 7.737110221,
    6.48800372, 4.297203734, 3.744773108, 5.012185632, 8.094466156, 7.235116659, 7.354059368,
    8.886213416, 8.966075787, 5.061646447, 4.98715626, 8.511852929, 4.28071898, 7.995564121,
    8.024419965, 7.098870826, 7.189343655, 4.999826069, 8.926286507, 8.136043017, 3.828739988,
    4.169462231, 5.013449001, 9.294684024]
GOLD_WIDTH = [0.1520180492, 0.2937224608, 0.1520180492, 0.3071730319, 0.2086867111, 0.4572602102,
    0.3066838725, 0.8995263639, 0.1520180492, 0.298227804, 0.3123604919, 0.1520180492, 0.1520180492,
    0.3029327971, 0.2002804712, 0.5179346585, 1.075042752, 0.1520180492, 0.2807948919, 0.1520180492,
    0.2986912074, 0.2769906573, 0.1520180492, 0.1949532445, 0.5140041691, 0.2888926408,
    0.9457996344, 0.1520180492, 0.3623123648, 0.3035122217, 0.1520180492, 0.1520180492,
    0.2890530072, 0.1923431963, 0.514454854, 1.044881257, 0.1520180492, 0.2791899017]
GOLD_CLASS = ['learned', 'learned', 'learned', 'rise-then-fall', 'learned', 'learned', 'rise-then-fall',
    'rise-then-fall', 'learned', 'learned', 'learned', 'rise-then-fall', 'learned',
    'rise-then-fall', 'learned', 'rise-then-fall', 'learned', 'learned', 'rise-then-fall',
    'rise-then-fall', 'learned', 'learned', 'learned', 'rise-then-fall']
GOLD_SSE = [0.928626971, 0.1437065881, 0.102477258, 0.1280989045, 0.1043056211, 1.108774568, 0.7225908423,
    0.1219393555, 0.1331395326, 0.09822774297, 0.1066243108, 0.3672333159, 0.3852508664,
    0.1826273041, 0.1125337292, 0.09391627536, 0.09292756443, 0.7222676218, 1.351644788,
    0.1450220208, 0.08681553996, 0.104319729, 0.1063990882, 0.275705557]


def golden_input():
    rng = np.random.default_rng(18)
    rows = []
    for i in range(24):
        w = [0.03, 0.1, 0.2, 0.5, 1.0, 0.05][i % 6]
        if i % 4 == 3:
            c = curve(U, 2.0, [-1.0, 3.0], [5.0, 7.0 + 0.1 * i], [w, 0.3])
        else:
            c = curve(U, rng.uniform(1, 3), [rng.uniform(1, 4)], [rng.uniform(3.5, 9)], [w])
        rows.append(c + rng.normal(0, 0.05, len(U)))
    return np.array(rows)


# The physical bounds off: loss_floor null and no amplitude cap reproduce the unbounded fitter.
UNBOUNDED = {"loss_floor": None, "a_max_noise_sds": float("inf")}


def test_span_rule_reproduces_the_fit_before_issue_18():
    res = fit_trajectories(golden_input(), U, FitConfig(width_floor="span", dtype="float64",
                                                        extra_axes=[], **UNBOUNDED))
    ev = res.events
    np.testing.assert_array_equal(ev["tok_idx"], GOLD_TOK_IDX)
    assert res.tokens["class"].tolist() == GOLD_CLASS
    for k, want in (("a", GOLD_A), ("mu", GOLD_MU), ("width", GOLD_WIDTH)):
        assert_allclose(ev[k], want, rtol=1e-8, err_msg=k)
    assert_allclose(res.tokens["sse"], GOLD_SSE, rtol=1e-8)
    assert (ev["width"] >= 0.02 * (U[-1] - U[0]) * (1 - 1e-12)).all()
    # the spacing rule on the same data: a different fit (the old floor pinned 12 of 38 events)
    new = fit_trajectories(golden_input(), U, FitConfig(dtype="float64", extra_axes=[]))
    assert new.events["width"].min() < 0.5 * 0.02 * (U[-1] - U[0])


# Tokens of golden_input() whose span-rule fit the physical bounds change: 0, 1, 5, 6, 12, 13,
# 17, 18 are steps of true width 0.03 or 0.05, sharper than the span floor (0.152); unbounded,
# each was fitted by a drop larger than the trajectory's whole range (e.g. token 0: a = 4.88
# where the losses span 3.39) cancelled by a rise 0.02-0.11 ln-units away. The bound on the
# change one event makes in the observed range forbids the overshoot: each is now one drop (13
# and 18, generated as single drops, turn from rise-then-fall to learned). Token 3 (a real
# rise-then-fall) starts its two-event fit from a feasible point and lands on a slightly lower
# SSE (0.123 for 0.128). Every other token keeps its events and SSE to 1e-8.
BOUND_CHANGED = (0, 1, 3, 5, 6, 12, 13, 17, 18)


def test_span_rule_with_the_physical_bounds():
    Y = golden_input()
    res = fit_trajectories(Y, U, FitConfig(width_floor="span", dtype="float64", extra_axes=[]))
    ev, tok = res.events, res.tokens
    gold_tok = np.array(GOLD_TOK_IDX)
    for t in set(range(24)) - set(BOUND_CHANGED):
        got = np.c_[ev["a"], ev["mu"], ev["width"]][ev["tok_idx"] == t]
        want = np.c_[GOLD_A, GOLD_MU, GOLD_WIDTH][gold_tok == t]
        assert_allclose(got, want, rtol=1e-8, err_msg=str(t))
        assert tok["class"][t] == GOLD_CLASS[t]
        assert tok["sse"][t] == pytest.approx(GOLD_SSE[t], rel=1e-8)
    assert (tok["n_events"][[0, 1, 5, 6, 12, 13, 17, 18]] == 1).all()
    assert tok["class"][[6, 13, 18]].tolist() == ["learned"] * 3
    assert tok["class"][3] == "rise-then-fall" and tok["sse"][3] < GOLD_SSE[3]
    changed = np.isin(ev["tok_idx"], BOUND_CHANGED)
    assert (np.abs(ev["a"][changed]) <= np.ptp(Y, 1)[ev["tok_idx"][changed]] + 0.2).all()


def test_single_checkpoint_spikes_are_not_events():
    """Under the spacing floor an event can be as sharp as the checkpoints, so the fitter could
    spend events on one checkpoint's outlier. A 2-nat spike at one or two checkpoints is flat (a
    rise and a fall within fit.excursion_spacings gaps are no two-event model), and a learned
    token with a spike at its first or last checkpoint stays learned (an event that changes the
    curve almost only between the two edge checkpoints is no model: fit.edge_share). With the
    rules off the same data give rise-then-fall, early and late."""
    rng = np.random.default_rng(21)
    spikes = []
    for k in (1, 2):
        y = np.full(len(U), 4.0)
        y[20:20 + k] += 2.0
        spikes += [y] * 6
    Y = np.array(spikes) + rng.normal(0, 0.05, (12, len(U)))
    on = fit_trajectories(Y, U, FitConfig(extra_axes=[]))
    off = fit_trajectories(Y, U, FitConfig(extra_axes=[], excursion_spacings=0))
    assert set(on.tokens["class"]) == {"flat"}
    assert set(off.tokens["class"]) == {"rise-then-fall"}
    rng = np.random.default_rng(22)
    shape = curve(U, 2.0, [4.0], [6.0], [0.4])
    Y = np.array([curve(U, 2.0, [4.0], [rng.uniform(4.5, 8)], [0.4])
                  + rng.normal(0, 0.05 + 0.02 * shape, len(U)) for _ in range(12)])
    Y[:6, 0] += 2.5
    Y[6:, -1] += 2.5
    on = fit_trajectories(Y, U, FitConfig(extra_axes=[]))
    off = fit_trajectories(Y, U, FitConfig(extra_axes=[], edge_share=1.0, **UNBOUNDED))
    assert set(on.tokens["class"]) == {"learned"} and set(on.tokens["model"]) == {"sigmoid1"}
    assert (off.tokens["class"][:6] == "early").all() and (off.tokens["class"][7:] == "late").all()
    # with the physical bounds (and the edge rule off), tokens 8 and 10 are learned: unbounded,
    # their 2.5-nat spike at the last checkpoint was a rise of a = -12.6 under a final level
    # b = 14.6, twice the highest loss observed (6.1), which |a| <= what the loss can move forbids
    bounded = fit_trajectories(Y, U, FitConfig(extra_axes=[], edge_share=1.0))
    assert bounded.tokens["class"][6:].tolist() == ["learned", "late"] * 3


# ----------------------------------------------------------------------------- physical bounds


def _drop_then_decline(n: int = 120, seed: int = 40):
    """Steps 1-2,000 (47 log-spaced checkpoints): an early drop, then a steady decline in ln step
    to a small final loss (a frequent token's shape); clipped at 0 like a cross-entropy."""
    u = np.log(np.unique(np.geomspace(1, 2000, 47).round()))
    rng = np.random.default_rng(seed)
    rows = [curve(u, rng.uniform(0.3, 2.0), [rng.uniform(1, 4)], [rng.uniform(1.5, 4)],
                  [rng.uniform(0.2, 0.6)]) + rng.uniform(0.3, 1.2) * (u[-1] - u) for _ in range(n)]
    return u, np.clip(noisy(rows, sd=0.3, seed=seed + 1), 0, None)


def test_fits_are_physical():
    """Unbounded, most of these fits end below 0 (b down to -14) under a drop larger than any
    loss observed, and a fifth put a midpoint outside the checkpoints; bounded: b >= 0, every
    fitted curve >= 0 over the observed range, |a| at most the highest loss plus the noise
    slack, and every midpoint outside the checkpoints flagged as censored."""
    u, Y = _drop_then_decline()
    res = fit_trajectories(Y, u, FitConfig(extra_axes=[]))
    tok, ev = res.tokens, res.events
    assert (tok["b"] >= 0).all()
    for t in range(len(Y)):
        m = ev["tok_idx"] == t
        assert curve(u, tok["b"][t], ev["a"][m], ev["mu"][m], ev["width"][m], tok["c"][t]).min() \
            >= -1e-6
    noise = np.median(np.abs(np.diff(Y, axis=1)), 1) / 0.954
    assert (np.abs(ev["a"]) <= (Y.max(1) + 2 * noise)[ev["tok_idx"]] + 1e-6).all()
    outside = (ev["mu"] < u[0]) | (ev["mu"] > u[-1])
    assert (ev["censored"][outside] != "none").all()
    unbounded = fit_trajectories(Y, u, FitConfig(extra_axes=[], **UNBOUNDED))
    assert (unbounded.tokens["b"] < 0).mean() > 0.3        # what the bounds prevent


def test_censored_events_are_flagged_and_counted():
    """Drops centred before the first or after the last checkpoint: the fit puts their
    midpoints at the edge (where mu trades off against a), within the early / late margins, so
    they are censored left / right in events.parquet, counted in the summary, and their tokens
    early / late; a drop inside the range is measured ('none')."""
    shapes = [curve(U, 3.0, [3.0], [2.0], [0.2]),             # centred before the first checkpoint
              curve(U, 1.0, [3.0], [U[-1] + 0.3], [0.2]),     # after the last
              curve(U, 2.0, [3.0], [6.0], [0.3])]             # inside
    Y = noisy(np.repeat(np.array(shapes), 4, 0), sd=0.05, seed=33)
    res = fit_trajectories(Y, U, FitConfig(extra_axes=[], max_events=1))
    ev = res.events
    assert ev["censored"].tolist() == ["left"] * 4 + ["right"] * 4 + ["none"] * 4
    assert res.tokens["class"].tolist() == ["early"] * 4 + ["late"] * 4 + ["learned"] * 4
    c = res.summary["censored"]
    assert (c["n_left"], c["n_right"], c["n_measured"]) == (4, 4, 4)
    assert c["event_share"] == pytest.approx(8 / 12)
    assert c["amplitude_share"] == pytest.approx(np.abs(ev["a"][:8]).sum() / np.abs(ev["a"]).sum())
    assert res.summary["loss_floor"] == 0.0


def test_bound_config_errors():
    with pytest.raises(ConfigError, match="loss_floor"):
        FitConfig(loss_floor=float("nan"))
    with pytest.raises(ConfigError, match="a_max_noise_sds"):
        FitConfig(a_max_noise_sds=-1)
