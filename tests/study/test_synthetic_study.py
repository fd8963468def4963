"""The synthetic study (study-synthetic on the planted corpus synthetic:facts): the regime checks
that run before any training, and benchmarks/synthetic_study.py end to end (slow)."""
import json
import os
from pathlib import Path

import pytest

from tokenclock.errors import DataError
from tokenclock.study.config import load_study
from tokenclock.study.stage import study
from tokenclock.testing import load_script

SMALL = ["corpus.max_chars=300000", "tokens.vocab_size=2048", "trace.n_seqs=16", "corpus.val_fraction=0.1",
         "study.budgets_steps=[8,12,18,27]", "train.warmup_steps=4"]


def _prepare(tmp_path, extra):
    return study(tmp_path / "s", load_study("study-synthetic", SMALL + extra), progress=False, only="prepare")


def test_the_preset_crosses_both_regimes():
    st = load_study("study-synthetic")
    assert st.study.seeds == [0, 1] and st.study.seed_kind == "data" and len(st.models()) >= 6
    assert st.base_config.train.dtype == "fp32"


def test_a_grid_without_a_capacity_limited_model_is_warned(tmp_path, capsys):
    _prepare(tmp_path, ["study.models=[llama-100k,llama-170k,llama-280k,llama-500k]"])
    err = capsys.readouterr().out
    assert "warning: no model is capacity-limited" in err and "llama-100k" in err and "add smaller models" in err
    assert "every model is capacity-limited" not in err


def test_a_grid_whose_budgets_show_no_fact_twice_is_warned(tmp_path, capsys):
    models = "study.models=[llama-7k,llama-15k,llama-27k,llama-60k]"
    result = _prepare(tmp_path, [models])
    assert "warning" not in capsys.readouterr().out
    _prepare(tmp_path, [models, "study.budgets_steps=[1,2,3,4]", "train.batch_size=1", "train.seq_len=8",
                        "train.warmup_steps=1"])
    out = capsys.readouterr().out
    assert "no budget shows a fact more than once" in out and "raise study.budgets_steps" in out
    assert "no model is capacity-limited" not in out and result["shared"]["n_tok"] > 0


def test_a_corpus_too_small_for_the_largest_budget_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"would take \d+\.\d\d epochs") as e:
        _prepare(tmp_path, ["study.budgets_steps=[8,12,18,400]"])
    assert "base.corpus.max_chars >=" in str(e.value) and "drop the budgets above" in str(e.value)
    assert not (tmp_path / "s" / "runs").exists()  # nothing trained


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TOKENCLOCK_SLOW") != "1", reason="set TOKENCLOCK_SLOW=1 (a 4 x 4 x 2 study, ~2 min)")
def test_benchmark_quick_scores_every_axis(tmp_path, capsys):
    module = load_script(Path(__file__).parents[2] / "benchmarks" / "synthetic_study.py")
    assert module.main(["--quick", "--out", str(tmp_path / "q")]) == 0
    result = json.loads((tmp_path / "q" / "synthetic_study.json").read_text())
    assert set(result["summary"]) == {"D_raw", "M_raw", "D_avg", "M_avg"}
    for rows in result["series"].values():
        assert {r["axis"] for r in rows.values()} == {"D", "M"}
        for r in rows.values():
            assert 0 <= r["share_learned"] <= 1 and r["learnable_value_tokens"] > 0
    assert set(result["regimes"]["capacity_bits"]) == {"llama-7k", "llama-15k", "llama-27k", "llama-60k"}
    assert result["T"]["learnable_value_tokens"] == result["learnable_value_tokens"]
    assert "Sp(mu,c)" in capsys.readouterr().out
