"""The report stage on a synthetic run directory written with the rundir writers (no training)."""
from __future__ import annotations

import html
import json
import math
import re
import shutil

import numpy as np
import pytest

from tokenclock.artifacts import read_json, write_json, write_npy, write_parquet
from tokenclock.curves import curve as fitted_curve
from tokenclock.errors import RunDirError
from tokenclock.manifest import update_stage
from tokenclock.rundir import RunDir
from tokenclock.scores import spearman
from tokenclock.stages.report.stage import report

N_TOK, N_CKPT, VOCAB = 200, 30, 512
EVIL = "<b>$x"  # token text that must be escaped in HTML and not parsed as mathtext
CLASSES = ("learned", "rise-then-fall", "flat", "forgotten", "irregular")


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def make_run(root, *, fit=True, spectrum=True):
    """A run with K checkpoints (step 0 included) and N tokens whose losses are known sigmoids."""
    rng = np.random.default_rng(1)
    run = RunDir(root)
    steps = np.r_[0, np.geomspace(10, 5000, N_CKPT - 1).round()].astype(np.int64)
    assert (np.diff(steps) > 0).all()
    x = steps.astype(float)
    u = np.log(np.maximum(x, 1.0))
    ln_v = math.log(VOCAB)
    cls = np.array([CLASSES[i % len(CLASSES)] for i in range(N_TOK)])
    b = rng.uniform(1.0, 4.0, N_TOK)
    ev_tok, ev_a, ev_mu, ev_w = [], [], [], []
    for i, c in enumerate(cls):
        if c == "learned":
            ev = [(ln_v - b[i], rng.uniform(1, 6), rng.uniform(0.2, 0.8))]
        elif c == "rise-then-fall":
            ev = [(-1.0, 1.5, 0.4), (ln_v + 1.0 - b[i], rng.uniform(3, 6), 0.5)]
        elif c == "forgotten":
            ev = [(-1.5, rng.uniform(2, 6), 0.5)]
        else:
            ev = []
        for a, mu, w in ev:
            ev_tok.append(i), ev_a.append(a), ev_mu.append(mu), ev_w.append(w)
    ev_tok, ev_a, ev_mu, ev_w = map(np.array, (ev_tok, ev_a, ev_mu, ev_w))
    loss = np.empty((N_CKPT, N_TOK))
    for i in range(N_TOK):
        m = ev_tok == i
        loss[:, i] = fitted_curve(u, b[i], ev_a[m], ev_mu[m], ev_w[m])
    loss += rng.normal(0, 0.05, loss.shape)
    loss[:, cls == "irregular"] += rng.normal(0, 1.0, (N_CKPT, (cls == "irregular").sum()))
    loss = np.abs(loss)
    write_npy(run.trace_loss, loss.astype(np.float32))
    lr = np.full(N_CKPT, 1e-3)
    write_parquet(run.trace_axis, {"step": steps, "tokens_seen": steps * 4096,
                                   "cum_lr": steps * 1e-3,
                                   "val_loss": loss.mean(1)})
    # every flat token carries '<b>$x', every forgotten one a newline: whichever the grid picks
    # and every rise-then-fall one a string that is invalid mathtext (must be drawn as plain text)
    texts = [EVIL + str(i) if c == "flat" else f"line\nbreak $ & 'q' {i}" if c == "forgotten"
             else "$\\bad{$" + str(i) if c == "rise-then-fall" else f"tok{i}"
             for i, c in enumerate(cls)]
    contexts = [f"ctx {i} <i>&" for i in range(N_TOK)]
    # mean unigram loss = mean loss at checkpoint 12, so the unigram phase ends inside the trace
    unigram = loss.mean(1)[12] + rng.uniform(-0.5, 0.5, N_TOK)
    unigram += loss.mean(1)[12] - unigram.mean()
    # train_count falls with the learning time of the token's largest learning event
    mu_main = rng.uniform(1, 6, N_TOK)
    for t, a, mu in sorted(zip(ev_tok, ev_a, ev_mu), key=lambda e: e[1]):
        if a > 0:
            mu_main[t] = mu
    write_parquet(run.trace_tokens, {
        "tok_idx": np.arange(N_TOK, dtype=np.int64), "sequence": np.arange(N_TOK, dtype=np.int32) // 50,
        "position": np.arange(N_TOK, dtype=np.int32) % 50, "token_id": np.arange(N_TOK, dtype=np.int32),
        "token_text": texts, "context": contexts,
        "train_count": np.round(np.exp(10 - mu_main)).astype(np.int64),
        "unigram_loss": unigram})
    write_json(run.trace_dir / "meta.json", {"n_tok": N_TOK, "n_ckpt": N_CKPT, "vocab_size": VOCAB,
                                             "axes": ["step", "tokens_seen", "cum_lr"], "source": "run"})
    write_parquet(run.ckpt_index, {"step": steps, "tokens_seen": steps * 4096, "lr": lr,
                                   "cum_lr": steps * 1e-3, "train_loss": loss.mean(1) + 0.1,
                                   "val_loss": loss.mean(1), "seconds": np.arange(N_CKPT, dtype=float)})
    update_stage(run, "trace", "done", config={"seq_len": 64}, seconds=1.5)
    if fit:
        write_parquet(run.fit_events, {"tok_idx": ev_tok.astype(np.int64), "a": ev_a, "mu": ev_mu,
                                       "width": ev_w})
        n_ev = np.bincount(ev_tok, minlength=N_TOK)
        model = np.where(n_ev == 0, "flat", np.where(n_ev == 1, "sigmoid1", "sigmoid2"))
        write_parquet(run.fit_tokens, {"tok_idx": np.arange(N_TOK, dtype=np.int64), "b": b,
                                       "n_events": n_ev, "r2": np.full(N_TOK, 0.9),
                                       "sse": np.full(N_TOK, 0.1), "class": cls.tolist(),
                                       "model": model.tolist()})
        write_json(run.fit_summary, {"n_tok": N_TOK, "axis": "step", "sigmoid_share": 0.6,
                                     "median_r2": 0.9})
        update_stage(run, "fit", "done", config={"axis": "step"}, seconds=0.5)
    if spectrum:
        xs, us = x[1:], u[1:]
        meas = np.gradient(-loss.mean(1)[1:], us)
        rec = meas + rng.normal(0, 0.01, len(us))
        held = np.arange(len(us)) % 2 == 1
        curve = {"x": xs, "u": us, "loss_mean": loss.mean(1)[1:], "dldu_measured": meas,
                 "dldu_reconstructed": rec, "loss_reconstructed": loss.mean(1)[1:], "heldout": held}
        write_parquet(run.spectrum_dir / "curve.parquet", curve)
        write_parquet(run.spectrum_dir / "cum_lr_curve.parquet", {**curve, "x": xs * 1e-3})
        grid = np.linspace(0, 8, 50)
        write_parquet(run.spectrum_dir / "density.parquet", {"u": grid, "rho": np.exp(-(grid - 4) ** 2)})
        write_json(run.spectrum_summary, {
            "axis": "step", "reconstruction_r2": 0.8761, "reconstruction_r2_heldout": 0.8123,
            "event_share": 0.91, "alpha_measured": 0.3141, "alpha_spectrum": 0.2718,
            "best_clock": "step", "power_law": {"E": 2.25, "A": 3.5, "alpha": 0.3141},
            "clocks": {"step": {"reconstruction_r2": 0.8761},
                                             "cum_lr": {"reconstruction_r2": 0.5432}}})
        update_stage(run, "spectrum", "done", seconds=0.2)
    return run


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run") / "run")
    return run, report(run.root)


def test_full_report_files(full_run):
    run, path = full_run
    assert path == run.report_html and path.is_file()
    page = path.read_text()
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert {"loss_curve.png", "examples.png", "spectrum.png", "reconstruction.png", "classes.png",
            "frequency.png"} <= set(imgs)
    for name in imgs:
        f = path.parent / name
        assert f.is_file() and f.stat().st_size > 1000
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(".*tmp*"))  # no temp files left behind
    assert "not computed" not in page
    assert "http" not in page.lower() and "<script" not in page.lower()  # offline, no JS


def test_full_report_numbers(full_run):
    run, path = full_run
    page = path.read_text()
    for number in ("0.876", "0.812", "0.314", "0.272", "0.543", "200", "30"):
        assert number in page, number
    assert "Spearman" in page and "unigram" in page
    assert "E = 2.25, A = 3.5 (spectrum/summary.json)" in page  # stored power law is used as is
    assert "least squares here" in page  # no power_law_spectrum: E, A fitted for alpha_spectrum
    summary = read_json(path.parent / "summary.json")
    assert summary["n_tok"] == N_TOK and summary["n_ckpt"] == N_CKPT
    assert summary["reconstruction_r2"] == pytest.approx(0.8761)
    assert summary["alpha_spectrum"] == pytest.approx(0.2718)
    assert summary["best_clock"] == "step"
    # 3 of 5 classes have events: 120 of 200 tokens use a sigmoid
    assert summary["sigmoid_share"] == pytest.approx(0.6)
    assert summary["class_shares"]["learned"] == pytest.approx(0.2)
    assert summary["unigram_drop_nats"] > 0
    # train_count was made to fall with mu: strong negative rank correlation
    assert summary["spearman_mu_train_count"] < -0.9
    assert 0 <= summary["early_event_share"] <= 1
    assert set(summary["clock_r2"]) == {"step", "cum_lr"}
    manifest = read_json(run.manifest)
    assert manifest["stages"]["report"]["status"] == "done"
    assert "report" in page and "seq_len" in page  # provenance table with resolved config


def test_token_text_is_escaped(full_run):
    _, path = full_run
    page = path.read_text()
    assert html.escape(EVIL) in page  # &lt;b&gt;$x
    assert EVIL not in page
    assert "<i>&" not in page and "&lt;i&gt;&amp;" in page
    assert "line\\nbreak" in page  # newline shown, not raw


def test_trace_only_run_renders_with_notes(tmp_path):
    run = make_run(tmp_path / "run", fit=False, spectrum=False)
    path = report(run.root)
    page = path.read_text()
    assert "not computed: run <code>tokenclock fit" in page
    assert "not computed: run <code>tokenclock spectrum" in page
    for name in re.findall(r'<img src="([^"]+)"', page):
        assert (path.parent / name).stat().st_size > 1000
    summary = json.loads((path.parent / "summary.json").read_text())
    assert summary["n_tok"] == N_TOK and "reconstruction_r2" not in summary


def test_missing_trace_is_a_run_dir_error(tmp_path):
    with pytest.raises(RunDirError, match="tokenclock trace"):
        report(tmp_path / "empty")
    run = make_run(tmp_path / "run", fit=False, spectrum=False)
    shutil.rmtree(run.trace_dir)
    with pytest.raises(RunDirError, match="tokenclock trace"):
        report(run.root)


def test_out_folder(tmp_path):
    run = make_run(tmp_path / "run", spectrum=False)
    path = report(run.root, out=tmp_path / "elsewhere")
    assert path == tmp_path / "elsewhere" / "index.html" and path.is_file()
    assert "tokenclock spectrum" in path.read_text()


def test_spearman_and_curve_known_answers():
    x = np.array([1.0, 2, 2, 3, 10])
    assert spearman(x, x ** 3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    u = np.linspace(-5, 5, 11)
    y = fitted_curve(u, 1.0, np.array([2.0]), np.array([0.0]), np.array([1.0]))
    assert y[0] == pytest.approx(3.0, abs=0.02) and y[-1] == pytest.approx(1.0, abs=0.02)
    assert y[5] == pytest.approx(2.0)


def test_imported_matrix_with_few_columns(tmp_path):
    """A matrix imported from losses.npz: one axis column ('D'), bare tokens table, no ckpt/."""
    run = RunDir(tmp_path / "npz")
    rng = np.random.default_rng(2)
    d = np.geomspace(1e6, 1e9, 8)
    u = np.log(d)
    mu = rng.uniform(u[1], u[-2], 40)
    loss = 3.0 + 2.0 * (1.0 / (1.0 + np.exp(-(mu[None, :] - u[:, None]) / 0.7)))
    write_npy(run.trace_loss, loss.astype(np.float32))
    write_parquet(run.trace_axis, {"D": d})
    write_parquet(run.trace_tokens, {"tok_idx": np.arange(40, dtype=np.int64)})
    write_json(run.trace_dir / "meta.json", {"n_tok": 40, "n_ckpt": 8, "axes": ["D"], "source": "npz"})
    write_parquet(run.fit_events, {"tok_idx": np.arange(40, dtype=np.int64), "a": np.full(40, 2.0),
                                   "mu": mu, "width": np.full(40, 0.7)})
    write_parquet(run.fit_tokens, {"tok_idx": np.arange(40, dtype=np.int64), "b": np.full(40, 3.0),
                                   "class": ["learned"] * 40, "model": ["sigmoid1"] * 40})
    write_json(run.fit_summary, {"n_tok": 40, "axis": "D"})
    page = report(run.root).read_text()
    assert "no training-split frequencies" in page
    summary = read_json(run.report_dir / "summary.json")
    assert summary["axis"] == "D" and summary["sigmoid_share"] == 1.0
    assert "examples.png" in summary["figures"] and "spectrum.png" in summary["figures"]


def test_resolution_section(tmp_path, full_run):
    """Events with a `resolved` column and a fit summary with `resolution`: the report draws the
    unresolved share per ln-time bin beside the resolved widths and reports the shares."""
    from tokenclock.artifacts import read_parquet
    from tokenclock.stages.fit.resolution import floor_summary, resolution_summary, resolved

    _, old = full_run  # events without `resolved` (an older fit): a note, no figure
    assert "fitted by an older tokenclock" in old.read_text()
    run = make_run(tmp_path / "run", spectrum=False)
    ev = read_parquet(run.fit_events)
    u = np.log(np.geomspace(10, 5000, N_CKPT - 1).round())
    ev["width"] = np.where(np.arange(len(ev["width"])) % 3 == 0, 0.05, ev["width"])  # sharp
    ev["resolved"] = resolved(u, ev["mu"], ev["width"])
    assert 0 < ev["resolved"].mean() < 1                        # 0.05 and 0.2-0.8 vs gaps ~0.22
    write_parquet(run.fit_events, ev)
    res = resolution_summary(u, ev["a"], ev["mu"], ev["width"], 8)
    write_json(run.fit_summary, {"n_tok": N_TOK, "axis": "step", "resolution": res,
                                 "width_floor": floor_summary(u, ev["mu"], ev["width"], "spacing",
                                                              0.1, 0.02)})
    path = report(run.root)
    page = path.read_text()
    assert "resolution.png" in re.findall(r'<img src="([^"]+)"', page)
    assert (path.parent / "resolution.png").stat().st_size > 1000
    assert "unresolved_event_share" in page and "resolved = true" in page  # caption names columns
    summary = read_json(path.parent / "summary.json")
    assert summary["unresolved_event_share"] == pytest.approx(1 - ev["resolved"].mean())
    assert summary["unresolved_amplitude_share"] == pytest.approx(
        np.abs(ev["a"][~ev["resolved"]]).sum() / np.abs(ev["a"]).sum())
    assert summary["resolved_width_median"] == pytest.approx(np.median(ev["width"][ev["resolved"]]))
    assert summary["width_floor_rule"] == "spacing" and "resolution.png" in summary["figures"]
    assert f"{100 * summary['unresolved_event_share']:.1f}%" in page


# ----------------------------------------------------------------------------- what to trust


@pytest.fixture(scope="module")
def trust_run(tmp_path_factory):
    """One report of make_run() with what the headline and the censored events need: a train
    stage in the manifest, an averaged series with its replicate, a fit whose b went below 0 and
    whose 7 latest learning events lie past the last checkpoint (censored right)."""
    from tokenclock.artifacts import read_parquet

    run = make_run(tmp_path_factory.mktemp("trust") / "run")
    update_stage(run, "train", "done", config={"model": {"preset": "llama-1m"},
                                               "train": {"steps": 2000, "batch_size": 16, "seq_len": 256}},
                 summary={"n_params": 1_400_000, "steps": 2000, "device": "cpu", "dtype": "bf16",
                          "precision": {"cpu": "Test CPU 9000"}})
    avg = RunDir(run.root, "avg")
    write_json(avg.spectrum_summary, {
        "axis": "step", "reconstruction_r2": 0.917, "reconstruction_r2_after_warmup": 0.836,
        "reconstruction_r2_heldout": 0.85, "reconstruction_r2_heldout_after_warmup": 0.765,
        "reconstruction_r2_block_heldout": 0.6, "reconstruction_r2_block_heldout_after_warmup": 0.393,
        "token_split_ceiling_r2_after_warmup": 0.99})
    write_json(avg.spectrum_replicate, {"ceiling_r2": {"mean": {"after_warmup": 0.846}},
                                        "cross_reconstruction_r2": {"a_events_predict_b": {"after_warmup": 0.7}},
                                        "replicate": "RUN2"})
    tok = {k: np.array(v) for k, v in read_parquet(run.fit_tokens).items()}
    tok["b"] = tok["b"] - 5.0                                  # unphysical b: must not be used
    write_parquet(run.fit_tokens, tok)
    ev = {k: np.array(v) for k, v in read_parquet(run.fit_events).items()}
    late = np.flatnonzero(ev["a"] > 0)[:7]
    ev["mu"][late] = math.log(5000) + 0.5
    ev["censored"] = np.where(ev["mu"] > math.log(5000), "right",
                              np.where(ev["mu"] < math.log(10), "left", "none"))
    write_parquet(run.fit_events, ev)
    path = report(run.root)
    return run, path, ev, late


def test_headline_names_one_score_and_its_ceiling(trust_run):
    """With an averaged series and its replicate: one setup sentence, one recommended score (held
    out after warmup, averaged weights) beside the replicate ceiling, every other score in one
    table with what it tests."""
    _, path, _, _ = trust_run
    page = path.read_text()
    head = page[page.index("<h2>Headline"):page.index("<h2>Loss curve")]
    assert ("Model llama-1m (1.4M non-embedding parameters), trained 2,000 steps at batch 16 x 256 "
            "tokens, on Test CPU 9000 (bf16); 200 validation tokens traced at 30 checkpoints along "
            "step.") in head
    assert head.count("Trust this score") == 1
    assert ("held-out R² after warmup of the reconstructed −dL/d ln x on the averaged weights = "
            "0.765, against a replicate ceiling of 0.846 (0.904 of it)") in head
    rec = read_json(path.parent / "summary.json")["recommended_score"]
    assert rec["series"] == "avg" and rec["key"] == "reconstruction_r2_heldout_after_warmup"
    assert rec["ceiling_kind"] == "replicate" and rec["ratio"] == pytest.approx(0.765 / 0.846)
    table = head[head.index("Every score"):]
    for v in ("0.917", "0.836", "0.393", "0.846"):  # the avg series' scores, the ceiling
        assert v in table, v
    assert "hardest of the held-out tests" in table and "(recommended)" in table
    # in-sample is no headline row any more: only in the scores table, after the recommendation
    assert head.index("Trust this score") < head.index("0.917")


def test_headline_without_avg_or_replicate_says_which_score(full_run):
    _, path = full_run  # raw series only, no after-warmup score: falls back, and says so
    head = path.read_text().split("<h2>Loss curve")[0]
    assert "held-out R² (every other checkpoint; no after-warmup score in the summary)" in head
    assert "raw weights = 0.812; no ceiling measured" in head


def test_drop_is_measured_and_censored_events_are_apart(trust_run):
    """The drops come from the traced losses, not from the (negative) b; the censored events are
    counted, hatched in the spectrum and left out of the frequency figure and the earliest /
    latest lists."""
    from tokenclock.artifacts import read_parquet

    run, path, ev, late = trust_run
    page = path.read_text()
    summary = read_json(path.parent / "summary.json")
    loss = np.load(run.trace_loss).astype(float)
    assert summary["drop_measured_nats"] == pytest.approx(loss[0].mean() - loss[-1].mean(), rel=1e-5)
    uni = read_parquet(run.trace_tokens)["unigram_loss"]
    assert summary["contextual_drop_nats"] == pytest.approx(np.mean(uni - loss[-1]), rel=1e-5)
    n_left = int((ev["censored"] == "left").sum())
    assert (summary["n_censored_right"], summary["n_censored_left"]) == (7, n_left)
    assert f"hatched: the {7 + n_left:,} censored events ({n_left:,} left, 7 right" in page
    lists = page[page.index("earliest and latest learned tokens"):].split("</details>")[0]
    for t in ev["tok_idx"][late]:
        assert f"ctx {t} " not in lists, t
    assert summary["n_censored_largest_learning"] >= 7
