"""The regimes a study on a planted corpus (`synthetic:facts`) crosses, from the planted counts:

- D: a fact seen c times in the training split is seen about c x D / D_train times at a budget of
  D tokens. The grid crosses the regime when the largest budget shows the commonest fact more than
  once (memorization can start) and the smallest still shows the rarest fact at most once (some
  facts are still unseen).
- M: a model stores about BITS_PER_PARAM bits of knowledge per parameter (Allen-Zhu & Li 2024,
  "Physics of Language Models 3.3"); the facts the largest budget shows hold log2(N_VALUES) bits
  each. The grid crosses the regime when the smallest model cannot hold them and the largest can.

A grid that misses a regime gets a warning naming it (the study still runs); a synthetic corpus
smaller than the largest budget is an error that says how many epochs the budget would take.
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.artifacts import read_npy, read_parquet
from tokenclock.errors import DataError
from tokenclock.rundir import RunDir
from tokenclock.stages.corpus.synthetic import N_VALUES, PREFIX, train_fact_counts
from tokenclock.stages.train.model import preset_params
from tokenclock.study.config import Study

BITS_PER_PARAM = 2.0
"""Knowledge a parameter stores (Allen-Zhu & Li 2024: about 2 bits per parameter, for facts seen
about 1,000 times; fewer exposures store less)."""


def planted_corpus(st: Study) -> bool:
    """True when the study's corpus is the planted synthetic:facts corpus."""
    sources = (st.base.get("corpus") or {}).get("sources") or []
    return any(str(s) == f"{PREFIX}facts" for s in sources)


def check_regimes(shared: RunDir, st: Study) -> dict | None:
    """The D and M regimes of a study on synthetic:facts (None for any other corpus): a DataError
    when the largest budget needs more than one epoch of the corpus, a printed warning for each
    regime the grid misses, and the figures behind them (study.json: regimes)."""
    if not planted_corpus(st):
        return None
    tc = st.base_config.train
    per_step = tc.batch_size * tc.seq_len
    budgets = st.budgets()
    train_tokens = int(read_npy(shared.token_stream("train"), mmap=True).shape[0])
    top_tokens = budgets[-1] * per_step
    if top_tokens > train_tokens:
        chars = (st.base.get("corpus") or {}).get("max_chars")
        need = (f"base.corpus.max_chars >= {math.ceil(chars * top_tokens / train_tokens * 1.05):,}".replace(",", "")
                if chars else "a larger base.corpus.max_chars")
        raise DataError(f"the synthetic corpus holds {train_tokens:,} training tokens; the largest budget "
                        f"({budgets[-1]:,} steps x {per_step:,} tokens) would take {top_tokens / train_tokens:.2f} "
                        f"epochs of it, and a fact's count per unit of data would no longer be its planted count",
                        f"set {need}, or drop the budgets above {train_tokens // per_step:,} steps")
    counts = np.array(list(train_fact_counts(
        read_parquet(shared.corpus_split("train"), columns=["text"])["text"].tolist()).values()), np.float64)
    seen_at = {b: counts * b * per_step / train_tokens for b in budgets}  # expected exposures per fact
    bits = float((seen_at[budgets[-1]] >= 1).sum() * math.log2(N_VALUES))
    models = st.models()
    capacity = {m: BITS_PER_PARAM * preset_params(m) for m in models}
    out = {"facts": int(len(counts)), "train_tokens": train_tokens,
           "commonest_fact_seen_at_top_budget": float(seen_at[budgets[-1]].max()),
           "rarest_fact_seen_at_smallest_budget": float(seen_at[budgets[0]].min()),
           "fact_bits_at_top_budget": bits, "bits_per_param": BITS_PER_PARAM,
           "capacity_bits": capacity,
           "capacity_limited_models": [m for m in models if capacity[m] < bits]}
    warnings = []
    if out["commonest_fact_seen_at_top_budget"] <= 1:
        warnings.append(f"no budget shows a fact more than once (the commonest is seen "
                        f"{out['commonest_fact_seen_at_top_budget']:.2f} times at {budgets[-1]:,} steps): the D "
                        "axis misses the memorization regime; raise study.budgets_steps")
    if out["rarest_fact_seen_at_smallest_budget"] > 1:
        warnings.append(f"every fact is seen more than once at the smallest budget (the rarest "
                        f"{out['rarest_fact_seen_at_smallest_budget']:.1f} times at {budgets[0]:,} steps): the D "
                        "axis misses the regime where facts are unseen; add smaller budgets")
    if bits and capacity[models[0]] >= bits:  # bits 0: no fact seen once, which the D warning names
        warnings.append(f"no model is capacity-limited: the smallest, {models[0]}, holds ~{capacity[models[0]]:,.0f} "
                        f"bits at {BITS_PER_PARAM:g} bits per parameter, the facts hold {bits:,.0f}; the M axis misses "
                        "that regime: add smaller models (llama-7k, llama-15k) or more facts")
    if capacity[models[-1]] < bits:
        warnings.append(f"every model is capacity-limited: the largest, {models[-1]}, holds ~{capacity[models[-1]]:,.0f} "
                        f"bits, the facts hold {bits:,.0f}; the M axis misses the regime where a model holds them "
                        "all: add larger models")
    for w in warnings:
        print(f"tokenclock: warning: {w}")
    out["warnings"] = warnings
    return out
