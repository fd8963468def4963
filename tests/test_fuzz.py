"""Property-based tests: any input to a reader either works or fails with the documented error
class; the fitter returns finite parameters or the class `irregular` for any finite trajectory."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tokenclock.errors import TokenclockError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.binary(max_size=400))
def test_text_reader_any_bytes(tmp_path, data):
    from tokenclock.stages.corpus.config import CorpusConfig
    from tokenclock.stages.corpus.stage import read_documents

    d = tmp_path / "t"
    d.mkdir(exist_ok=True)
    (d / "a.txt").write_bytes(data)
    (d / "b.txt").write_text("A second document with enough words to be one. " * 10)
    try:
        docs = read_documents(CorpusConfig(sources=[str(d)]))
    except TokenclockError:
        return
    assert all(isinstance(x.text, str) and x.text for x in docs)


@SETTINGS
@given(lines=st.lists(st.one_of(st.text(max_size=40), st.dictionaries(st.sampled_from(["text", "body", "x"]),
                                                                       st.one_of(st.text(max_size=30), st.integers())),
                                  ), min_size=1, max_size=6))
def test_jsonl_reader_any_lines(tmp_path, lines):
    from tokenclock.stages.corpus.config import CorpusConfig
    from tokenclock.stages.corpus.stage import read_documents

    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    try:
        docs = read_documents(CorpusConfig(sources=[str(path)]))
    except TokenclockError:
        return
    assert all(isinstance(x.text, str) for x in docs)


@SETTINGS
@given(keys=st.sets(st.sampled_from(["axis_values", "loss_matrix", "axis_name", "sample_id", "metadata"])),
       n=st.integers(0, 5), k=st.integers(0, 7), bad=st.sampled_from([None, "nan", "inf", "neg", "dup"]),
       transpose=st.booleans())
def test_npz_reader_any_shapes(tmp_path, keys, n, k, bad, transpose):
    from tokenclock.stages.trace.npz import read_losses_npz

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.uniform(0.5, 2, k)) if k else np.zeros(0)
    m = rng.uniform(0, 9, (n, k))
    if bad == "nan" and m.size:
        m.flat[0] = np.nan
    if bad == "inf" and m.size:
        m.flat[-1] = np.inf
    if bad == "neg" and k:
        x[0] = -1
    if bad == "dup" and k > 1:
        x[1] = x[0]
    arrays_ = {"axis_values": x, "loss_matrix": m.T if transpose else m, "axis_name": np.array("T"),
               "sample_id": np.arange(n), "metadata": np.array("{}")}
    path = tmp_path / "l.npz"
    np.savez(path, **{key: arrays_[key] for key in keys})
    try:
        d = read_losses_npz(path)
    except TokenclockError:
        return
    assert d["loss_matrix"].shape == (d["loss_matrix"].shape[0], len(d["axis_values"]))
    assert np.isfinite(d["loss_matrix"]).all() and (np.diff(d["axis_values"]) > 0).all()


@SETTINGS
@given(data=st.binary(min_size=0, max_size=300))
def test_parquet_reader_any_bytes(tmp_path, data):
    from tokenclock.artifacts import read_parquet

    path = tmp_path / "x.parquet"
    path.write_bytes(data)
    try:
        read_parquet(path)
    except TokenclockError:
        return


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (3, 12), elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)))
def test_fitter_any_finite_trajectory(Y):
    from tokenclock.stages.fit.config import FitConfig
    from tokenclock.stages.fit.fitter import fit_trajectories

    u = np.log(np.arange(1, 13, dtype=np.float64) * 3)
    res = fit_trajectories(Y, u, FitConfig(extra_axes=[]))
    ok = np.isfinite(res.tokens["b"]) & np.isfinite(res.tokens["r2"])
    for j in range(len(Y)):
        sel = res.events["tok_idx"] == j
        params_ok = ok[j] and all(np.isfinite(res.events[c][sel]).all() for c in ("a", "mu", "width"))
        assert params_ok or res.tokens["class"][j] == "irregular"
        assert (res.events["width"][sel] > 0).all()
