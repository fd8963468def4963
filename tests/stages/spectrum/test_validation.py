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
from tokenclock.stages.spectrum.replicate import replicate
from tokenclock.stages.spectrum.validation import block_mask, token_half

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
