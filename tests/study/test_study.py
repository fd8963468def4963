"""The study: a tiny models x budgets grid of cooldown branches end to end (D and M axes, T axis,
Chinchilla baseline, report), resume, failed runs, bad grids, and the Chinchilla fit's known answer."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokenclock.cli import main
from tokenclock.errors import ConfigError, DataError, TokenizerError, TrainingError


def study_sets(texts_dir: Path) -> list[str]:
    sets = [f"corpus.sources=[{texts_dir}]", "corpus.max_chars=null", "corpus.val_fraction=0.1",
            "train.threads=1", "trace.n_seqs=16", "study.budgets_steps=[16,32,64,128]",
            "study.compare_full_steps=[64]", "study.bootstrap=10", "train.avg=ema", "study.weights=[raw,avg]"]
    return sum((["--set", s] for s in sets), [])


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, texts_dir) -> Path:
    out = tmp_path_factory.mktemp("study") / "s"
    assert main(["study", "study-tiny", "--out", str(out), "--quiet", *study_sets(texts_dir)]) == 0
    return out


def test_study_end_to_end(tiny_study):
    man = json.loads((tiny_study / "study.json").read_text())
    runs = man["runs"]
    assert len(runs) == 4 * 4 + 4  # 4 models x 4 budgets + a full-schedule twin at 64 steps per model
    assert all(r["status"] == "done" for r in runs.values())
    assert {r["kind"] for r in runs.values()} == {"stable", "branch", "compare"}
    axes = man["axes"]
    assert sorted(axes) == sorted([f"D_llama-{m}" for m in ("100k", "250k", "500k", "1m")]
                                  + [f"M_{b:07d}" for b in (16, 32, 64, 128)])
    for name, a in axes.items():
        assert a["status"] == "done", (name, a)
        d = tiny_study / "axes" / name
        assert np.load(d / "trace" / "loss.npy").shape == (4, 16 * 32)
        assert (d / "trace" / "tokens.parquet").is_file() and (d / "trace" / "meta.json").is_file()
        fit_s = json.loads((d / "fit" / "summary.json").read_text())
        spec = json.loads((d / "spectrum" / "summary.json").read_text())
        assert fit_s["axis"] == a["column"] and "reconstruction_r2" in spec
        z = np.load(d / "losses.npz")
        assert str(z["axis_name"]) == name[0] and z["loss_matrix"].shape == (16 * 32, 4)
    from tokenclock.artifacts import read_parquet

    assert list(read_parquet(tiny_study / "axes" / "D_llama-1m" / "trace" / "axis.parquet")) == ["tokens_seen"]
    assert list(read_parquet(tiny_study / "axes" / "M_0000016" / "trace" / "axis.parquet")) == ["n_params"]
    assert man["T"]["status"] == "done" and man["T"]["run"].startswith("llama-1m")
    for k in ("D", "M", "T"):
        assert k in man["summary"]
    ch = json.loads((tiny_study / "chinchilla.json").read_text())
    for k in ("E", "A", "alpha", "B", "beta"):
        assert math.isfinite(ch[k])
    # branch vs full at one budget: both complete, the difference is recorded
    bvf = man["branch_vs_full"]
    assert len(bvf) == 4 and all(math.isfinite(r["diff_nats"]) for r in bvf)
    html = (tiny_study / "report" / "index.html").read_text()
    assert "axes.png" in html and (tiny_study / "report" / "axes.png").is_file()
    # the averaged-weight finals make a second set of axes (issue 16: annealed and averaged finals)
    assert sorted(man["axes_avg"]) == sorted(axes) and "D" in man["summary_avg"]
    for name, r in runs.items():
        raw = np.load(tiny_study / "finals" / f"{name}.npy")
        avg = np.load(tiny_study / "finals_avg" / f"{name}.npy")
        assert raw.shape == avg.shape and not np.array_equal(raw, avg)
        assert math.isclose(r["final_trace_loss_avg"], float(avg.mean()), rel_tol=1e-6)
    assert all(a["status"] == "done" and a["weights"] == "avg" for a in man["axes_avg"].values())
    assert (tiny_study / "axes_avg" / "D_llama-1m" / "fit" / "summary.json").is_file()
    assert "axis_avg_D_llama-1m.png" in html and "axis_raw_M_0000016.png" in html
    # every run traced the same inputs: the shared tokenizer is hard-linked or copied, not retrained
    shared = (tiny_study / "shared" / "tokens" / "tokenizer.json").read_bytes()
    for name in runs:
        assert (tiny_study / "runs" / name / "tokens" / "tokenizer.json").read_bytes() == shared


def test_study_failed_run_then_resume(tiny_study, texts_dir, monkeypatch, capsys):
    from tokenclock import pipeline as train_mod

    real = train_mod.train

    def flaky(run_dir, cfg, **kw):
        if Path(run_dir).name == "llama-250k_b0000032_s0":
            raise TrainingError("training loss is nan at step 20: training diverged", "lower train.lr_peak")
        return real(run_dir, cfg, **kw)

    monkeypatch.setattr(train_mod, "train", flaky)
    rc = main(["study", "study-tiny", "--out", str(tiny_study), "--quiet", *study_sets(texts_dir)])
    assert rc == TrainingError.exit_code
    err = capsys.readouterr().err
    assert "run llama-250k_b0000032_s0: training loss is nan" in err
    man = json.loads((tiny_study / "study.json").read_text())
    assert man["runs"]["llama-250k_b0000032_s0"]["status"] == "failed"
    assert man["axes"]["D_llama-250k"]["status"] == "skipped"   # 3 points left
    assert man["axes"]["M_0000032"]["status"] == "skipped"
    assert man["axes"]["D_llama-1m"]["status"] == "done"

    monkeypatch.setattr(train_mod, "train", real)
    assert main(["study", "study-tiny", "--out", str(tiny_study), "--quiet", *study_sets(texts_dir)]) == 0
    man = json.loads((tiny_study / "study.json").read_text())
    assert all(r["status"] == "done" and r["cached"] for r in man["runs"].values())
    assert all(a["status"] == "done" for a in man["axes"].values())


def test_too_few_points_is_an_error(texts_dir, tmp_path):
    from tokenclock.study.config import load_study

    with pytest.raises(DataError, match="add budgets"):
        load_study("study-tiny", ["study.budgets_steps=[16,32,64]"])
    with pytest.raises(DataError, match="add models"):
        load_study("study-tiny", ["study.models=[llama-100k,llama-250k,llama-500k]"])
    rc = main(["study", "study-tiny", "--out", str(tmp_path / "s"), "--set", "study.budgets_steps=[16,32,64]"])
    assert rc == DataError.exit_code


def test_unknown_keys_are_config_errors():
    from tokenclock.study.config import load_study

    with pytest.raises(ConfigError, match="study.modles"):
        load_study("study-tiny", ["study.modles=[a]"])
    with pytest.raises(ConfigError, match="train.stepz"):
        load_study("study-tiny", ["train.stepz=3"])
    with pytest.raises(ConfigError, match="branches or full"):
        load_study("study-tiny", ["study.mode=both"])


def test_different_tokenizer_is_refused(tmp_path):
    from tokenclock.rundir import StudyDir
    from tokenclock.study.shared import check_same_inputs

    for name, text in (("shared", "{}"), ("runs/a", "{}"), ("runs/b", '{"x": 1}')):
        (tmp_path / name / "tokens").mkdir(parents=True)
        (tmp_path / name / "tokens" / "tokenizer.json").write_text(text)
    from tokenclock.study.shared import digest

    sig = {"tokenizer": digest(tmp_path / "shared" / "tokens" / "tokenizer.json"), "val": ""}
    check_same_inputs(StudyDir(tmp_path), ["a"], sig)
    with pytest.raises(TokenizerError, match="runs b use a different tokenizer"):
        check_same_inputs(StudyDir(tmp_path), ["a", "b"], sig)


def test_branch_plan_matches_wsd_schedule():
    from tokenclock.stages.train.schedule import lr_at
    from tokenclock.study.config import load_study
    from tokenclock.study.plan import branch_start, plan

    st = load_study("study-tiny", ["study.budgets_steps=[10,20,40,80]", "study.decay_fraction=0.2"])
    runs = plan(st)
    stable = [r for r in runs if r.kind == "stable"][0]
    assert stable.train["keep_state_steps"] == [8, 16, 32]
    for b in (10, 20, 40):
        s = branch_start(b, 0.2)
        kw = dict(schedule="wsd", lr_peak=1.0, total_steps=b, warmup_steps=2, decay_fraction=0.2)
        assert lr_at(s - 1, **kw) == 1.0 and lr_at(s, **kw) == 1.0 and lr_at(s + 1, **kw) < 1.0


def test_chinchilla_recovers_known_exponents():
    from tokenclock.study.chinchilla import fit_chinchilla, predict

    N = np.repeat(np.logspace(5, 8, 4), 4)
    D = np.tile(np.logspace(7, 10, 4), 4)
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
    L = predict(truth, N, D) * np.exp(np.random.default_rng(0).normal(0, 1e-3, len(N)))
    fit = fit_chinchilla(N, D, L, n_boot=5)
    np.testing.assert_allclose([fit["alpha"], fit["beta"]], [0.34, 0.28], rtol=0.1)
    assert fit["bootstrap"]["alpha"][0] <= fit["bootstrap"]["alpha"][2]
    with pytest.raises(DataError):
        fit_chinchilla(N[:3], D[:3], L[:3])


def test_job_array_split_then_final_call(tiny_study, tmp_path, texts_dir, capsys):
    """--only prepare, then --only K per model (a Slurm array), then a final call builds the axes
    without retraining: the same study.json runs as a one-shot study."""

    out = tmp_path / "arr"
    assert main(["study", "study-tiny", "--out", str(out), "--quiet", "--only", "prepare", *study_sets(texts_dir)]) == 0
    assert (out / "shared" / "trace" / "inputs.npy").is_file() and not (out / "runs").exists()
    assert main(["study", "study-tiny", "--out", str(out), "--quiet", "--only", "0", *study_sets(texts_dir)]) == 0
    trained = sorted(p.name for p in (out / "runs").iterdir())
    assert trained and len({n.split("_b")[0] for n in trained}) == 1  # one model's runs only
    assert not (out / "axes").exists()
    assert main(["study", "study-tiny", "--out", str(out), "--quiet", "--only", "9", *study_sets(texts_dir)]) == 3
    capsys.readouterr()
    # the other array jobs (--only 1..3) as if they had finished on other nodes: their runs, hard
    # linked from the one-shot study of the same grid (every writer replaces files atomically, so
    # tiny_study is left as it was)
    for run in (tiny_study / "runs").iterdir():
        if run.name not in trained:
            shutil.copytree(run, out / "runs" / run.name, copy_function=os.link)
    assert main(["study", "study-tiny", "--out", str(out), "--quiet", *study_sets(texts_dir)]) == 0
    done = json.loads((out / "study.json").read_text())
    ref = json.loads((tiny_study / "study.json").read_text())
    assert sorted(done["runs"]) == sorted(ref["runs"])
    assert all(r["status"] == "done" for r in done["runs"].values())
    assert all(r["cached"] for r in done["runs"].values())  # the final call trained nothing
    assert all(a["status"] == "done" for a in done["axes"].values())


def test_moved_study_resumes_without_retraining(tiny_study, tmp_path, texts_dir):
    """A study directory moved elsewhere (mv, rsync to a cluster's scratch) resumes and re-reports
    from its new place: runs name each other relative to the study directory, nothing is retrained,
    and no artifact points back at the old place."""
    import os
    import shutil

    from tokenclock.artifacts import read_json

    # hard links make the copy instant; every writer replaces files atomically, so tiny_study is
    # left as it was
    staged, moved = tmp_path / "before" / "s", tmp_path / "after" / "s"
    shutil.copytree(tiny_study, staged, copy_function=os.link)
    moved.parent.mkdir()
    shutil.move(staged, moved)
    old_places = [str(tiny_study.resolve()), str(staged)]
    branch = read_json(moved / "runs" / "llama-100k_b0000016_s0" / "manifest.json")
    assert branch["stages"]["train"]["config"]["train"]["init_from"] == \
        "runs/llama-100k_b0000128_s0/ckpt/step_0000012"
    weights = sorted(moved.glob("runs/*/ckpt/step_*/model.safetensors"))
    mtimes = [p.stat().st_mtime_ns for p in weights]

    assert main(["study", "study-tiny", "--out", str(moved), "--quiet", *study_sets(texts_dir)]) == 0
    man = read_json(moved / "study.json")
    assert all(r["status"] == "done" and r["cached"] for r in man["runs"].values())
    assert all(a["status"] == "done" for a in man["axes"].values())
    assert sorted(moved.glob("runs/*/ckpt/step_*/model.safetensors")) == weights
    assert [p.stat().st_mtime_ns for p in weights] == mtimes
    assert str(moved.resolve()) in (moved / "report" / "index.html").read_text()

    stale = []
    for p in moved.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        stale += [f"{p.relative_to(moved)}: {old}" for old in old_places if old.encode() in data]
    assert not stale, stale


def test_init_from_recorded_relative_or_absolute_is_the_same_run(tmp_path):
    """A branch recorded by an older study (absolute init_from, since moved) or by this one
    (relative to the study directory) matches; another checkpoint or another source does not."""
    from tokenclock.errors import RunDirError
    from tokenclock.manifest import update_stage
    from tokenclock.rundir import RunDir
    from tokenclock.stages.train.stage import _check_same_run

    run = RunDir(tmp_path / "runs" / "b")
    conf = {"model": {}, "seed": 0, "train": {"steps": 16, "init_from": "runs/a/ckpt/step_0000012"}}
    for recorded in ("runs/a/ckpt/step_0000012", str(tmp_path / "runs/a/ckpt/step_0000012"),
                     "/gone/old/study/runs/a/ckpt/step_0000012"):
        update_stage(run, "train", "done", config={**conf, "train": {**conf["train"], "init_from": recorded}})
        _check_same_run(run, conf, init_root=tmp_path)
    for other in ("runs/a/ckpt/step_0000024", "runs/c/ckpt/step_0000012"):
        with pytest.raises(RunDirError, match="train.init_from"):
            _check_same_run(run, {**conf, "train": {**conf["train"], "init_from": other}}, init_root=tmp_path)
    # outside a study (no init_root) init_from keeps its meaning: as given, or relative to the cwd
    update_stage(run, "train", "done", config={**conf, "train": {**conf["train"], "init_from": "/x/ckpt/step_0000012"}})
    _check_same_run(run, {**conf, "train": {**conf["train"], "init_from": "/x/ckpt/step_0000012"}})
    with pytest.raises(RunDirError, match="train.init_from"):
        _check_same_run(run, {**conf, "train": {**conf["train"], "init_from": "/y/ckpt/step_0000012"}})


def test_data_seeds_share_the_init_and_axes_record_a_ceiling(tmp_path):
    """study.seed_kind=data: every seed keeps the base seed (same initial weights) and changes
    train.data_seed; an axis with two seeds records the R^2 between their measured -dL/du, and
    one with a single seed says it needs two."""
    from tokenclock.artifacts import read_parquet
    from tokenclock.rundir import RunDir
    from tokenclock.study.axes import replicate_ceiling
    from tokenclock.study.config import load_study

    st = load_study("study-tiny", ["study.seeds=[0,3]", "study.seed_kind=data"])
    cfgs = [st.run_config(s, "llama-100k", {"steps": 24}) for s in (0, 3)]
    assert [c.seed for c in cfgs] == [0, 0] and [c.train.data_seed for c in cfgs] == [0, 3]
    full = load_study("study-tiny", ["study.seeds=[0,3]"]).run_config(3, "llama-100k", {})
    assert full.seed == 3 and full.train.data_seed is None
    with pytest.raises(ConfigError, match="seed_kind"):
        load_study("study-tiny", ["study.seed_kind=init"])
    x = np.array([100, 200, 400, 800, 1600, 3200])
    rng = np.random.default_rng(0)
    base = 5 - 2 / (1 + np.exp(-(np.log(x) - 6.5) / 0.6))  # a learning event along the axis
    per = [{0: np.full(50, b) + rng.normal(0, 0.01, 50), 3: np.full(50, b) + rng.normal(0, 0.01, 50)}
           for b in base]
    ax = RunDir(tmp_path / "axis")
    rep = replicate_ceiling(ax, x, per, smoothing=1)
    assert rep["n_seeds"] == 2 and 0.5 < rep["replicate_ceiling_r2"] <= 1.0
    assert set(read_parquet(ax.spectrum_replicate_curve)) >= {"x", "dldu_measured_seed0", "dldu_measured_seed3"}
    one = replicate_ceiling(ax, x, [{0: p[0]} for p in per], smoothing=1)
    assert one["replicate_ceiling_r2"] is None and "two or more" in one["replicate_note"]


def test_study_refuses_budgets_below_warmup_and_avg_without_ema():
    from tokenclock.study.config import load_study

    with pytest.raises(ConfigError, match=r"smallest study budget \(4 steps\) is shorter than train.warmup_steps \(8\)"):
        load_study("study-tiny", ["study.budgets_steps=[4,8,16,32]"])
    with pytest.raises(ConfigError, match="train.avg: ema"):
        load_study("study-tiny", ["study.weights=[raw,avg]"])
    with pytest.raises(ConfigError, match="axis_fit_rules"):
        load_study("study-tiny", ["study.axis_fit_rules=[two_events,three_events]"])
    st = load_study("study-cpu")  # the preset follows issue 16's rules
    assert len(st.models()) >= 8 and len(st.study.seeds) >= 2 and st.study.weights == ["raw", "avg"]
    b = np.log10(st.budgets())
    assert (len(b) - 1) / (b[-1] - b[0]) >= 6 - 1e-9  # >= 6 budgets per decade
    from tokenclock.stages.train.model import preset_params
    gaps = np.diff(np.log([preset_params(m) for m in st.models()]))
    assert gaps.max() / gaps.min() < 1.25  # evenly spaced in ln(params)


def test_small_k_penalty_and_rule_choice():
    """bic_small_k: the penalty p ln K grows by K/(K-p-1), so two events (p = 7) are no candidate
    on 8 points and one event (p = 4) none on 5; choose_rule keeps the best mean held-out R^2
    among the rules that scored every axis."""
    import torch

    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.models import _choose_by_bic
    from tokenclock.study.fitrules import FIT_RULES, choose_rule, rule_config

    sse = {n: torch.tensor([v]) for n, v in (("flat", 8.0), ("linear", 6.0), ("sigmoid1", 0.1), ("sigmoid2", 0.001))}
    names, _, best, _ = _choose_by_bic(sse, 8, "cpu")
    assert names[int(best[0])] == "sigmoid2"  # plain BIC takes the near-perfect two-event fit
    names, _, best, gap = _choose_by_bic(sse, 8, "cpu", penalty="bic_small_k")
    assert names[int(best[0])] == "sigmoid1" and gap[0] > 0
    names, _, best, gap = _choose_by_bic(sse, 5, "cpu", penalty="bic_small_k")
    assert names[int(best[0])] in ("flat", "linear") and torch.isnan(gap[0])
    scores = {"two_events": {"D_a": 0.5, "D_b": 0.7}, "one_event": {"D_a": 0.8, "D_b": 0.6},
              "wide": {"D_a": 0.99, "D_b": None}}
    c = choose_rule(scores, ["two_events", "one_event", "wide"])
    assert c["chosen"] == "one_event" and c["score_mean"]["wide"] is None
    assert math.isclose(c["score_mean"]["two_events"], 0.6)
    cfg = rule_config(FitConfig(min_drop_nats=0.25), "one_event")
    assert cfg.max_events == 1 and cfg.rule == "one_event" and cfg.min_drop_nats == 0.25
    assert set(FIT_RULES) == {"two_events", "one_event", "wide", "bic_small_k"}
    with pytest.raises(ConfigError, match="penalty"):
        FitConfig(penalty="aic")


def test_sparse_axes_try_every_rule_on_held_out_points(tiny_study, tmp_path):
    """build_axes with several study.axis_fit_rules: each axis kind is fitted under every rule,
    scored on held-out axis points, and keeps the best rule; the fit records it. Finals are
    synthetic (a learning event along ln D and ln N per token, two noisy seeds), on the tiny
    study's shared tokens: 8 budgets x 8 models, no training."""
    from tokenclock.artifacts import read_npy, write_npy
    from tokenclock.rundir import StudyDir
    from tokenclock.stages.train.model import preset_params
    from tokenclock.study.axes import build_axes
    from tokenclock.study.config import load_study
    from tokenclock.study.shared import _link_tree

    models = ["llama-100k", "llama-170k", "llama-250k", "llama-280k", "llama-500k", "llama-700k",
              "llama-1m", "llama-1.2m"]
    budgets = [16, 24, 32, 48, 64, 96, 128, 192]
    st = load_study("study-tiny", [f"study.models=[{','.join(models)}]", f"study.budgets_steps=[{','.join(map(str, budgets))}]",
                                   "study.seeds=[0,1]", "study.axis_fit_rules=[two_events,one_event]"])
    sd = StudyDir(tmp_path / "s")
    src = StudyDir(tiny_study)
    for sub in ("tokens", "trace"):
        _link_tree(src.shared.root / sub, sd.shared.root / sub)
    inputs = read_npy(sd.shared.trace_inputs).astype(np.int64)
    n = inputs.shape[0] * (inputs.shape[1] - 1)
    rng = np.random.default_rng(0)
    mu_d, mu_m = rng.uniform(np.log(16), np.log(192), n), rng.uniform(12, 13.5, n)
    good = {}
    for m in models:
        for b in budgets:
            for seed in (0, 1):
                name = f"{m}_b{b:07d}_s{seed}"
                loss = (6 - 1.5 / (1 + np.exp(-(np.log(b) - mu_d) / 0.3))
                        - 1.0 / (1 + np.exp(-(np.log(preset_params(m)) - mu_m) / 0.3)) + rng.normal(0, 0.05, n))
                write_npy(sd.final_losses(name), loss.astype(np.float32))
                good[name] = {"model": m, "steps": b, "seed": seed, "n_params": preset_params(m), "kind": "branch"}
    axes, rules = build_axes(sd, st, good, inputs, st.base_config, progress=False)
    assert set(rules) == {"D", "M"}
    for kind, c in rules.items():
        assert c["chosen"] in ("two_events", "one_event")
        assert all(v is not None for v in c["score_mean"].values()), c
        assert all(v is not None for v in c["heldout_every_other_r2_mean"].values()), c
        done = [a for a in axes.values() if a.get("axis") == kind]
        assert len(done) == 8 and all(a["status"] == "done" and a["fit_rule"] == c["chosen"] for a in done)
        assert all(a["replicate_ceiling_r2"] is not None and a["reconstruction_r2_heldout"] is not None
                   and a["reconstruction_r2_loo"] is not None for a in done)
    fs = json.loads((sd.axis("D_llama-100k").fit_dir / "summary.json").read_text())
    assert fs["rule"] == rules["D"]["chosen"]


def test_a_run_resumes_with_another_thread_count(tmp_path):
    """train.threads says how fast, not which run: a resume may change it (EXEC_KEYS)."""
    from tokenclock.errors import RunDirError
    from tokenclock.manifest import update_stage
    from tokenclock.rundir import RunDir
    from tokenclock.stages.train.stage import _check_same_run

    run = RunDir(tmp_path / "r")
    conf = {"model": {}, "seed": 0, "train": {"steps": 16, "threads": 2, "lr_peak": 0.003}}
    update_stage(run, "train", "done", config=conf)
    _check_same_run(run, {**conf, "train": {**conf["train"], "threads": 1}})
    with pytest.raises(RunDirError, match="lr_peak"):
        _check_same_run(run, {**conf, "train": {**conf["train"], "lr_peak": 0.1}})


def test_job_array_siblings_wait_for_the_shared_lock(tmp_path, monkeypatch):
    """Two jobs of a job array start together: a lock file created but not yet written is read
    again (not reported as 'in use by pid None'), and a job whose sibling holds STUDY_DIR/shared/
    for a moment waits for it instead of failing."""
    import json as _json
    import os
    import socket
    import threading
    import time

    from tokenclock.errors import RunDirError, RunLockedError
    from tokenclock.lock import run_lock
    from tokenclock.rundir import RunDir
    from tokenclock.study import stage as study_stage

    run = RunDir(tmp_path / "shared")
    run.root.mkdir()
    run.lock.write_text("")  # another process between its create and its write
    holder = {"pid": os.getppid(), "host": socket.gethostname(), "stage": "tokens", "since": "now"}
    threading.Timer(0.3, lambda: run.lock.write_text(_json.dumps(holder))).start()
    with pytest.raises(RunDirError, match=f"in use by pid {os.getppid()} "):
        with run_lock(run, "corpus"):
            pass
    calls = []

    def busy_then_free(sd, st, progress):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RunLockedError("STUDY_DIR/shared is in use by pid 1 on h (stage corpus, since now)")
        return {"ok": True}

    monkeypatch.setattr(study_stage, "prepare_shared", busy_then_free)
    assert study_stage._prepare_shared_waiting(None, None, False, wait_s=30) == {"ok": True}
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(RunDirError, match="in use"):  # the final call (no --only) does not wait
        study_stage._prepare_shared_waiting(None, None, False, wait_s=0)
