"""Public suites by name: branch names -> steps and tokens, the branch list read from the hub
(recorded `list_repo_refs` responses replayed through huggingface_hub's client, no network) or
from the huggingface_hub cache (the same code offline), gaps reported and not interpolated, an
unknown suite name refused with the list. Offline."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from test_duplicates import _folder_files, build_hub_cache
from test_series import CFG

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.errors import ConfigError, InputError
from tokenclock.rundir import RunDir
from tokenclock.stages.trace import suites
from tokenclock.stages.trace.config import TraceConfig
from tokenclock.stages.trace.revisions import PYTHIA_STEPS
from tokenclock.stages.trace.series import trace_revisions


def test_rows_of_each_suite():
    S = suites.SUITES
    assert S["pythia"].row("step1000") == {"step": 1000, "tokens_seen": 1000 * 2_097_152}
    assert S["polypythias"].row("step143000")["tokens_seen"] == 143000 * 2_097_152
    # OLMo-2 7B: the names round tokens up to 1B; 4,194,304 tokens a step reproduces every name
    for name, step in (("stage1-step101000-tokens424B", 101000), ("stage1-step175000-tokens735B", 175000),
                       ("stage1-step300000-tokens1259B", 300000), ("step150-tokens1B", 150),
                       ("step600-tokens3B", 600), ("step850-tokens4B", 850), ("step2000-tokens9B", 2000),
                       ("stage1-step928646-tokens3896B", 928646)):
        assert S["olmo2-7b"].row(name) == {"step": step, "tokens_seen": step * 4_194_304}
    with pytest.raises(InputError, match="name says 4B"):
        S["olmo2-7b"].row("step1000-tokens4B")  # OLMo-1's naming rounds to nearest: not this suite's clock
    assert S["olmo"].row("step1000-tokens4B") == {"step": 1000, "tokens_seen": 4 * 10 ** 9}
    assert S["amber"].row("ckpt_000") == {"step": 1, "tokens_seen": 1_706_976 * 2048}
    assert S["amber"].row("ckpt_359")["tokens_seen"] == 360 * 1_706_976 * 2048  # 1.2586e12: the 1259.13B data mix
    assert len(S["amber"].grid) == 360


def test_unknown_suite_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="unknown suite or revision name 'pythai'.*pythia, polypythias"):
        suites.find("EleutherAI/pythia-70m", "pythai")
    assert suites.find("EleutherAI/pythia-70m", "step1000") is None  # one revision: not a suite
    assert suites.find("x", "amber") is suites.SUITES["amber"]
    from tokenclock.cli import main

    assert main(["trace", "--model", "x/y", "--revisions", "olmo3", "--out", str(tmp_path / "r")]) == 3


def test_branch_list_from_the_hub_with_gaps(recorded_hub, capsys):
    answers, asked = recorded_hub
    names = [f"step{s}" for s in PYTHIA_STEPS if s not in (4, 61000)] + ["main"]
    answers["/api/models/EleutherAI/pythia-160m-seed3/refs"] = {
        "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": f"{i:040x}"} for i, n in enumerate(names)],
        "converts": [], "tags": []}
    revs, rec = suites.suite_revisions("EleutherAI/pythia-160m-seed3", suites.SUITES["polypythias"])
    assert "/api/models/EleutherAI/pythia-160m-seed3/refs" in asked
    assert len(revs) == 152 and revs[:4] == ["step0", "step1", "step2", "step8"] and revs[-1] == "step143000"
    assert rec["missing"] == [4, 61000] and rec["branches_from"] == "hub"
    assert "lacks 2 step(s) of the polypythias schedule: 4, 61000" in capsys.readouterr().err
    # OLMo: no fixed grid; the usual spacing shows the gaps
    olmo = ["step150-tokens1B"] + [f"stage1-step{s}-tokens{-(-s * 4194304 // 10 ** 9)}B"
                                   for s in range(1000, 9001, 1000) if s != 5000] + ["stage2-ingredient1-step11931-tokens50B"]
    answers["/api/models/allenai/OLMo-2-1124-7B/refs"] = {
        "branches": [{"name": n, "ref": "", "targetCommit": "0" * 40} for n in olmo], "converts": [], "tags": []}
    revs, rec = suites.suite_revisions("allenai/OLMo-2-1124-7B", suites.SUITES["olmo2-7b"])
    assert revs[0] == "step150-tokens1B" and len(revs) == 9 and rec["missing"] == [5000]


def test_offline_cache_branches_traced_with_gap_reported(series, tmp_path, monkeypatch, capsys):
    """`--revisions pythia` offline: the branches this machine's hub cache holds, the rest of the
    schedule reported as missing, tokens_seen = step x 2,097,152."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = "EleutherAI/pythia-tiny"
    build_hub_cache(cache, repo, {f"step{s}": _folder_files(series["root"] / f"step{s}") for s in (0, 1, 2, 4, 8, 16)})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    meta = trace_revisions(tmp_path / "r", repo, "pythia", str(series["text"]), TraceConfig(**CFG), progress=False)
    axis = read_parquet(RunDir(tmp_path / "r").trace_axis)
    assert list(axis["step"]) == [0, 1, 2, 4, 8, 16]
    assert list(axis["tokens_seen"]) == [s * 2_097_152 for s in (0, 1, 2, 4, 8, 16)]
    assert meta["suite"]["branches_from"] == "hub cache" and len(meta["suite"]["missing"]) == 154 - 6
    assert meta["suite"]["missing"][:2] == [32, 64]
    assert "lacks 148 step(s) of the pythia schedule: 32, 64" in capsys.readouterr().err
    cfg = read_json(RunDir(tmp_path / "r").manifest)["stages"]["trace"]["config"]
    assert cfg["suite"]["suite"] == "pythia"
