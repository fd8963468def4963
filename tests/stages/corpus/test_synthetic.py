"""Tests of the synthetic corpora (stages/corpus/synthetic.py): the facts generator is deterministic,
its difficulty is planted as documented (Zipf counts), the `synthetic:NAME` source and the CLI's
--synthetic, the unknown name, and the planted truth of a tiny traced run."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tokenclock.artifacts import read_json, read_parquet
from tokenclock.cli import main
from tokenclock.errors import ConfigError
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus import synthetic as S
from tokenclock.stages.corpus.config import CorpusConfig
from tokenclock.stages.corpus.sources import fingerprint, missing_sources
from tokenclock.stages.corpus.stage import build_corpus, read_documents
from tokenclock.testing import load_script


def test_facts_are_deterministic_from_the_seed():
    a = read_documents(CorpusConfig(sources=["synthetic:facts"], max_chars=50_000))
    b = read_documents(CorpusConfig(sources=["synthetic:facts"], max_chars=50_000))
    c = read_documents(CorpusConfig(sources=["synthetic:facts"], max_chars=50_000, seed=1))
    assert a == b and a != c
    assert sum(len(d.text) for d in a) <= 50_000 and len(a) > 1
    assert {d.source for d in a} == {"facts"} and len({d.doc_id for d in a}) == len(a)
    assert S.facts_vocabulary() == S.facts_vocabulary()  # words do not depend on the seed
    assert not np.array_equal(S.fact_values(0), S.fact_values(1))


def test_facts_plant_zipf_counts_and_one_value_per_fact():
    entities, values, relations = S.facts_vocabulary()
    assert len(set(entities)) == S.N_ENTITIES and len(set(values)) == S.N_VALUES
    assert not {e.lower() for e in entities} & set(values)
    docs = read_documents(CorpusConfig(sources=["synthetic:facts"], seed=3))  # DEFAULT_CHARS
    assert S.DEFAULT_CHARS - 1000 < sum(len(d.text) for d in docs) <= S.DEFAULT_CHARS
    table = S.fact_values(3)
    lines = [line.split(" ") for d in docs for line in d.text.split("\n")]
    assert all(len(w) == 3 for w in lines)
    index = {e: i for i, e in enumerate(entities)}
    assert all(values[table[index[e], relations.index(r)]] == v for e, r, v in lines)
    for d in docs:  # a fact at most once per document: nothing to copy from context
        pairs = [tuple(line.split(" ")[:2]) for line in d.text.split("\n")]
        assert len(pairs) == len(set(pairs))
    # entity frequencies follow the Zipf weights (rank r: 1 / (r + 1)) but for the head, which the
    # once-per-document rule thins; relations are uniform
    ent = Counter(index[e] for e, _, _ in lines)
    n = len(lines)
    p = S.zipf_weights()
    assert 0.7 < ent[0] / n / p[0] < 0.9
    for r in (4, 9, 99, 299, 999):
        assert abs(ent[r] / n - p[r]) < 4 * np.sqrt(p[r] / n) + 0.05 * p[r], r
    ranks = np.array([ent[r] for r in range(S.N_ENTITIES)], dtype=float)
    slope = np.polyfit(np.log(np.arange(1, S.N_ENTITIES + 1)), np.log(ranks + 0.5), 1)[0]
    assert -1.05 < slope < -0.95
    rel = Counter(r for _, r, _ in lines)
    assert max(rel.values()) / min(rel.values()) < 1.1
    counts = S.train_fact_counts(d.text for d in docs)
    assert sum(counts.values()) == n and max(counts.values()) / min(counts.values()) > 300


def test_source_kind_fingerprint_and_missing(tmp_path):
    cfg = CorpusConfig(sources=["synthetic:facts"], max_chars=20_000)
    assert missing_sources(cfg) == []
    assert fingerprint(cfg) == {"files": [], "builtin": None, "synthetic": S.SYNTHETIC_VERSION}
    assert "synthetic" not in fingerprint(CorpusConfig(sources=[str(tmp_path)]))
    stats = build_corpus(tmp_path / "run", cfg, progress=False)
    assert stats["sources"]["facts"]["docs"] == stats["n_docs"] and stats["splits"]["val"]["docs"] >= 1
    assert build_corpus(tmp_path / "run", cfg, progress=False) == stats  # up to date: kept


def test_unknown_synthetic_name_lists_the_names():
    with pytest.raises(ConfigError, match=r"unknown synthetic corpus 'fact'.*did you mean 'facts'.*facts"):
        read_documents(CorpusConfig(sources=["synthetic:fact"]))


def test_cli_synthetic(tmp_path, capsys):
    assert main(["corpus", "--synthetic", "facts", "--set", "corpus.max_chars=30000"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert list(counted["sources"]) == ["facts"] and counted["chars"] <= 30_000
    run = tmp_path / "run"
    assert main(["corpus", "--synthetic", "facts", "--out", str(run), "--quiet",
                 "--set", "corpus.max_chars=30000"]) == 0
    assert read_json(RunDir(run).corpus_stats)["source_specs"] == ["synthetic:facts"]
    capsys.readouterr()
    assert main(["corpus", "--synthetic", "nope", "--out", str(tmp_path / "bad")]) == 3
    err = capsys.readouterr().err.strip()
    assert err == "tokenclock: error: unknown synthetic corpus 'nope' (the synthetic corpora are: facts)"
    assert not (tmp_path / "bad" / "corpus" / "stats.json").exists()


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    """benchmarks/synthetic_control.py --quick: a tiny run on synthetic:facts, both weight series
    traced, fitted and scored; returns (run directory, the benchmark module)."""
    module = _benchmark()
    run = tmp_path_factory.mktemp("synthetic") / "control"
    assert module.main(["--quick", "--out", str(run)]) == 0
    return run, module


def _benchmark():
    """The module benchmarks/synthetic_control.py (with its sibling _common importable)."""
    return load_script(Path(__file__).parents[3] / "benchmarks" / "synthetic_control.py")


def test_benchmark_quick_mode_writes_its_figures_and_resumes(control, capsys):
    run, module = control
    result = json.loads((run / "synthetic_control.json").read_text())
    assert set(result["series"]) == {"raw", "avg"}
    for fig in result["series"].values():
        assert -1 <= fig["spearman_mu_vs_count"] <= 1 and 0 <= fig["share_learned"] <= 1
        assert fig["learnable_value_tokens"] > 0 and fig["reconstruction_r2_heldout_after_warmup"] is not None
        assert sum(r["value_tokens"] for r in fig["by_count"]) == fig["learnable_value_tokens"]
        assert {"entity", "relation", "value", "other"} <= set(fig["misfit_by_kind"])
    loss = RunDir(run, "avg").trace_loss
    mtime = loss.stat().st_mtime_ns
    assert module.main(["--quick", "--out", str(run)]) == 0  # a rerun skips every finished stage
    assert loss.stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert "goal <= -0.9" in out and "goal >= 0.95" in out


def test_half_drop_steps_is_model_free():
    steps = np.array([1, 2, 4, 8, 16, 32, 64])
    loss = np.array([[8, 8, 8, 7, 2, 0, 0], [8, 8, 8, 8, 8, 8, 7.5], [9, 5, 4, 2.5, 2, 1, 0]], float).T
    got = _benchmark().half_drop_steps(loss, steps, after_step=2)
    assert got[0] == 16 and np.isnan(got[1]) and got[2] == 8  # (8+0)/2 reached at 16; a drop < 1 nat; (5+0)/2 at 8


def test_planted_truth_of_a_traced_run(control):
    run = RunDir(control[0])
    truth = S.planted(run.root)
    toks = read_parquet(run.trace_tokens)
    assert np.array_equal(truth["tok_idx"], toks["tok_idx"])
    counts = S.train_fact_counts(read_parquet(run.corpus_split("train"))["text"])
    entities, values, relations = S.facts_vocabulary()
    table = S.fact_values(0)
    value = truth["kind"] == "value"
    assert 0.2 < value.mean() < 0.3 and truth["learnable"].sum() > 0.8 * value.sum()
    assert set(truth["kind"]) == {"entity", "relation", "value", "other"}
    for i in np.flatnonzero(value):  # the fact of each value token, read again from its context
        ctx = toks["context"][i] + toks["token_text"][i]
        m = re.search(r"([A-Z][a-z]+) ([a-z]+) ([a-z]+)$", ctx)
        if m is None:  # the context column is cut at 8 tokens; the line is longer
            continue
        e, r, first = m.groups()  # the value's first token
        assert toks["token_text"][i] == " " + first
        stated = values[table[entities.index(e), relations.index(r)]]
        assert stated == first if truth["learnable"][i] else stated.startswith(first)
        assert truth["fact_count"][i] == counts[(e, r)] and truth["entity_rank"][i] == entities.index(e)
    assert (truth["fact_count"][~value] == -1).all() and not truth["learnable"][~value].any()
    assert not (truth["learnable"] & truth["repeat"]).any()
    relation = truth["kind"] == "relation"
    assert set(np.asarray(toks["token_text"])[relation]) <= {" " + r for r in relations}
