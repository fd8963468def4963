"""What bounds a reconstruction: the token split and its ceiling, held-out checkpoint blocks, the
replicate ceiling of two runs that differ only in data order (and its refusals), and both weight
series side by side in the report."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_overrides
from tokenclock.artifacts import read_json, read_parquet
from tokenclock.cli import main
from tokenclock.errors import DataError
from tokenclock.rundir import RunDir
from tokenclock.stages.spectrum.heldout import block_mask, token_half
from tokenclock.stages.spectrum.replicate import replicate

STEPS = {"train.steps": 120, "train.ckpt_per_decade": 10, "train.avg": "ema"}


def _sets(texts_dir, **extra):
    return sum((["--set", s] for s in tiny_overrides(texts_dir, **{**STEPS, **extra})), [])


@pytest.fixture(scope="module")
def replicates(tmp_path_factory, texts_dir):
    """Two tiny runs, data seeds 0 and 1 (same init, same traced tokens), both series traced and fitted."""
    root = tmp_path_factory.mktemp("replicates")
    runs = []
    for name, extra in (("a", {}), ("b", {"train.data_seed": 1})):
        run = root / name
        sets = _sets(texts_dir, **extra)
        assert main(["train", "--config", "tiny", "--out", str(run), "--quiet", *sets]) == 0
        for w in ("raw", "avg"):
            assert main(["trace", str(run), "--config", "tiny", "--quiet", "--weights", w, *sets]) == 0
            assert main(["fit", str(run), "--config", "tiny", "--quiet", "--weights", w, *sets]) == 0
            assert main(["spectrum", str(run), "--quiet", "--weights", w]) == 0
        runs.append(run)
    return runs


def test_block_mask_and_token_half():
    m = block_mask(14, 3)
    assert m.tolist() == [False] * 3 + [True] * 3 + [False] * 3 + [True] * 3 + [False] * 2
    assert not block_mask(12, 3)[-3:].any()  # the last block is always fitted
    h = token_half(11)
    assert h.sum() == 5 and np.array_equal(h, token_half(11))


def test_series_are_separate_and_scored(replicates):
    a = RunDir(replicates[0])
    for w, trace in (("raw", "trace"), ("avg", "trace_avg")):
        s = a.series(w)
        assert s.trace_dir.name == trace and s.trace_loss.is_file()
        summ = read_json(s.spectrum_summary)
        for key in ("token_split_r2_after_warmup", "token_split_ceiling_r2", "reconstruction_r2_block_heldout",
                    "reconstruction_r2_block_heldout_after_warmup"):
            assert summ[key] is not None and np.isfinite(summ[key]), (w, key)
        assert summ["token_split_ceiling_r2"] > summ["token_split_r2"] - 0.5  # a ceiling, loosely
        curve = read_parquet(s.spectrum_curve())
        assert curve["block_heldout"].any() and np.isfinite(curve["dldu_block_heldout"]).all()
    # both series traced the same tokens, the averaged one other losses
    assert np.array_equal(np.load(a.trace_inputs), np.load(a.series("avg").trace_inputs))
    assert not np.array_equal(np.load(a.trace_loss), np.load(a.series("avg").trace_loss))
    m = read_json(a.manifest)["stages"]
    assert {"trace", "trace_avg", "fit", "fit_avg", "spectrum", "spectrum_avg"} <= set(m)
    assert read_json(a.series("avg").trace_meta)["average"]["kind"] == "ema"


def test_replicate_ceiling(replicates, capsys):
    a, b = replicates
    assert main(["spectrum", str(a), "--replicate", str(b), "--quiet", "--weights", "avg"]) == 0
    rep = read_json(RunDir(a, "avg").spectrum_replicate)
    assert rep["data_seeds"] == [0, 1] and rep["steps_dropped"] == []
    c = rep["ceiling_r2"]["mean"]["after_warmup"]
    assert c is not None and c < 1.0
    assert set(rep["reconstruction_r2"]) == {"a", "b"} and rep["cross_reconstruction_r2"]["a_events_predict_b"]
    series = read_parquet(RunDir(a, "avg").spectrum_replicate_curve)
    assert not np.array_equal(series["dldu_measured_a"], series["dldu_measured_b"])
    out = replicate(a, b)  # raw series
    assert out["weights"] == "raw" and RunDir(a).spectrum_replicate.is_file()
    assert main(["report", str(a)]) == 0
    page = (RunDir(a).report_html).read_text()
    assert "How far the reconstruction can be trusted" in page and "averaged weights" in page
    assert "replicate ceiling" in page
    summ = read_json(RunDir(a).report_summary)
    assert set(summ["series"]) == {"raw", "avg"} and "raw" in summ["replicate"]


def test_averaged_weight_report_names_the_folders_it_read(replicates):
    """The report of the averaged series names trace_avg/, fit_avg/ and spectrum_avg/ (where it read)
    and the commands that write them (--weights avg), not the raw series' trace/ and fit/."""
    import re

    a = replicates[0]
    assert main(["report", str(a), "--weights", "avg"]) == 0
    page = RunDir(a, "avg").report_html.read_text()
    named = set(re.findall(r"\b(trace|fit|spectrum)(_avg)?/[a-z_]+\.(?:npy|parquet|json)", page))
    # its own series everywhere; the raw series' spectrum only where the trust section sets both side by side
    assert {("trace", "_avg"), ("fit", "_avg"), ("spectrum", "_avg")} <= named, named
    assert ("trace", "") not in named and ("fit", "") not in named, named
    assert "tokenclock trace RUN --weights avg" in page and "tokenclock fit RUN --weights avg" in page
    assert "tokenclock trace RUN</code>" not in page


def test_replicate_refusals(replicates, tmp_path, texts_dir):
    import shutil

    a, b = replicates
    other = tmp_path / "other"
    shutil.copytree(b, other)
    sets = _sets(texts_dir, **{"train.data_seed": 1, "trace.n_seqs": 40})
    assert main(["trace", str(other), "--config", "tiny", "--quiet", *sets]) == 0
    with pytest.raises(DataError, match="different validation tokens"):
        replicate(a, other)
    shutil.copy(RunDir(a).tokenizer, RunDir(other).tokenizer)
    tok = RunDir(other).tokenizer
    tok.write_text(tok.read_text().replace('"<|endoftext|>"', '"<|end|>"', 1))
    with pytest.raises(DataError, match="tokenizers differ"):
        replicate(a, other)


def test_avg_trace_without_averages_is_refused(tiny_run, capsys):
    assert main(["trace", str(tiny_run), "--quiet", "--weights", "avg"]) == 3  # ConfigError
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("tokenclock: error: trace.weights=avg") and "train.avg=ema" in last


def test_discrete_and_leave_one_out_scores():
    """reconstruct_derivative_discrete takes the events' level curve through the measured
    derivative's operator: on a dense axis it equals the analytic derivative, on a sparse one it
    sees a step between two points that the analytic derivative at the points misses. The
    spectrum's leave-one-out refits score every point from a fit without it."""
    from tokenclock.stages.spectrum.reconstruct import (
        measured_derivative,
        reconstruct_derivative,
        reconstruct_derivative_discrete,
    )

    ev = {"a": np.array([1.0]), "mu": np.array([3.0]), "width": np.array([0.5])}
    dense = np.linspace(0, 6, 400)
    assert np.allclose(reconstruct_derivative_discrete(ev, 1, dense, 1), reconstruct_derivative(ev, 1, dense), atol=1e-3)
    sparse = np.arange(7.0)
    sharp = {"a": np.array([1.0]), "mu": np.array([2.5]), "width": np.array([0.01])}
    step = np.where(sparse < 2.5, 1.0, 0.0)   # the level curve of that step, as a measured loss
    assert np.allclose(reconstruct_derivative(sharp, 1, sparse), 0, atol=1e-12)
    assert np.allclose(reconstruct_derivative_discrete(sharp, 1, sparse, 1), measured_derivative(step, sparse, 1))


def test_leave_one_out_on_an_axis(tmp_path):
    """A synthetic axis of 10 points (a run-like folder, as a study writes): spectrum.leave_one_out
    writes a left-out reconstruction for every point and its R^2 beside the others."""
    import dataclasses

    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.stage import fit
    from tokenclock.stages.spectrum.config import SpectrumConfig
    from tokenclock.stages.spectrum.stage import spectrum
    from tokenclock.study.axes import write_axis

    x = np.geomspace(1e4, 1e7, 10)
    rng = np.random.default_rng(1)
    mu = rng.uniform(np.log(2e4), np.log(5e6), 400)
    loss = 6 - 2 / (1 + np.exp(-(np.log(x)[:, None] - mu[None, :]) / 0.5)) + rng.normal(0, 0.03, (10, 400))
    ax = write_axis(RunDir(tmp_path / "ax"), "tokens_seen", x.astype(np.int64), loss,
                    {"tok_idx": np.arange(400), "token_id": np.zeros(400, np.int64)}, {"axis_name": "D"})
    fit(ax, dataclasses.replace(FitConfig(min_drop_nats=0.25), axis="tokens_seen", extra_axes=[]), progress=False)
    s = spectrum(ax, SpectrumConfig(smoothing=1, leave_one_out=True, block_size=0), progress=False)
    assert s["n_ckpt_loo"] == 10 and s["reconstruction_r2_loo"] > 0.5 and s["reconstruction_r2_discrete"] > 0.5
    curve = read_parquet(ax.spectrum_curve())
    assert np.isfinite(curve["dldu_loo"]).all() and np.isfinite(curve["dldu_loo_discrete"]).all()
