"""Fit rules for sparse axes. A study's D and M axes have 8-15 points, too few for two free
sigmoids (7 parameters) per token, so a study may try several rules and keep, per axis kind, the
one that reconstructs held-out axis points best (study/axes.py). Each rule is a set of FitConfig
overrides; the fit records its name (fit/summary.json: rule), and the same fit code serves every
axis. Reads and writes nothing.
"""
from __future__ import annotations

import dataclasses

import numpy as np

FIT_RULES: dict[str, dict] = {
    "two_events": {},                              # the T axis' rule: up to two events, BIC
    "one_event": {"max_events": 1},                # at most one sigmoid per token
    "wide": {"w_min_spacing": 1.0},                # no event narrower than one axis spacing
    "bic_small_k": {"penalty": "bic_small_k"},     # BIC whose penalty grows as p nears K
}
"""name -> FitConfig overrides."""


def rule_config(fit_cfg, rule: str):
    """The FitConfig of `rule` on top of the study's base fit section."""
    return dataclasses.replace(fit_cfg, rule=rule, **FIT_RULES[rule])


def choose_rule(scores: dict[str, dict[str, float | None]], rules: list[str]) -> dict:
    """Per rule the mean held-out R^2 over the axes it scored ({rule: {axis: r2}}), and the rule
    with the highest mean (the first listed on a tie; only rules that scored every axis count)."""
    axes = set().union(*(s.keys() for s in scores.values())) if scores else set()
    means: dict[str, float | None] = {}
    for r in rules:
        v = [x for x in scores.get(r, {}).values() if x is not None and np.isfinite(x)]
        means[r] = float(np.mean(v)) if v and len(v) == len(axes) else None
    ok = [r for r in rules if means[r] is not None]
    return {"chosen": max(ok, key=lambda r: (means[r], -rules.index(r))) if ok else rules[0],
            "score_mean": means, "score": scores,
            "criterion": "mean leave-one-out R^2 of -dL/du over the axes of this kind (each axis point "
                         "predicted by events fitted on the others); the chosen rule's scores are "
                         "selected on these same points, so they are optimistic by the choice among the rules"}
