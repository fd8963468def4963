"""A trace resumed under other torch/transformers versions re-traces one finished row and appends
only when it agrees; a disagreeing row stops the trace before anything is appended. The version
change is written into progress.json (the record a trace started elsewhere would leave). Offline."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from test_series import CFG

from tokenclock.artifacts import read_json, write_json
from tokenclock.errors import DataError
from tokenclock.rundir import RunDir
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.series import trace_revisions

OLD = {"torch": "2.1.0", "transformers": "4.30.1"}


def _interrupted(series, out, monkeypatch) -> list[str]:
    """Trace the series into out, interrupted while loading the third checkpoint; returns the log of
    loads (the resumed run appends to it)."""
    import tokenclock.stages.trace.series as S

    real, loads, state = S.model_loader, [], {"stop": True}

    def counting(ck, dtype, emb):
        inner = real(ck, dtype, emb)

        def load():
            loads.append(ck.label)
            if len(loads) == 3 and state["stop"]:
                raise KeyboardInterrupt
            return inner()
        return load

    monkeypatch.setattr(S, "model_loader", counting)
    with pytest.raises(KeyboardInterrupt):
        trace_revisions(out, str(series["root"]), "all", str(series["text"]), TraceConfig(**CFG), progress=False)
    state["stop"] = False
    run = RunDir(out)
    prog = read_json(run.trace_progress)
    assert prog["done"] == [0, 1] and prog["versions"]["torch"] not in (None, OLD["torch"])
    write_json(run.trace_progress, prog | {"versions": OLD})
    loads.clear()
    return loads


def test_resume_under_other_versions_checks_a_row(series, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    loads = _interrupted(series, out, monkeypatch)
    trace_revisions(out, str(series["root"]), "all", str(series["text"]), TraceConfig(**CFG), progress=False)
    assert loads == ["step0", "step2", "step4", "step8", "step16"]  # step0 again: the check
    err = capsys.readouterr().err
    assert "resuming a trace started under torch 2.1.0 -> " in err and "transformers 4.30.1 -> " in err
    check = read_json(RunDir(out).trace_progress)["version_checks"][0]
    assert check["row"].startswith("{'step': 0") and check["mean_abs_diff"] < 1e-4
    assert read_json(RunDir(out).trace_progress)["versions"] == OLD  # the rows' first versions are kept


def test_resume_refused_when_the_row_differs(series, tmp_path, monkeypatch):
    out = tmp_path / "r"
    _interrupted(series, out, monkeypatch)
    run = RunDir(out)
    mm = np.lib.format.open_memmap(run.trace_partial, mode="r+")
    mm[0] += 0.05  # what a transformers change of a model's numerics would leave on disk
    mm.flush()
    del mm
    with pytest.raises(DataError, match=r"checkpoint \{'step': 0.*differs from the rows on disk .*fresh --out"):
        trace_revisions(out, str(series["root"]), "all", str(series["text"]), TraceConfig(**CFG), progress=False)
    assert not run.trace_loss.exists() and read_json(run.trace_progress)["done"] == [0, 1]
