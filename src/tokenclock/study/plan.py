"""The plan of a study: every run it trains, named `<model>_b<steps>_s<seed>[_full]`, in training
order, with its overrides of the base train section (a stable run before its cooldown branches).
"""
from __future__ import annotations

from dataclasses import dataclass

from tokenclock.study.config import Study


@dataclass
class PlannedRun:
    name: str
    model: str
    seed: int
    steps: int  # budget in steps
    kind: str  # full | stable | branch | compare
    train: dict  # overrides of the base train section
    parent: str | None = None  # branch: the stable run it starts from


def branch_start(steps: int, decay_fraction: float) -> int:
    """First decaying step of a WSD run of `steps` steps (the formula of schedule.lr_at)."""
    return steps - max(1, int(round(decay_fraction * steps)))


def plan(st: Study) -> list[PlannedRun]:
    """Every run of the study in training order (a stable run before its branches)."""
    budgets, sc = st.budgets(), st.study
    runs: list[PlannedRun] = []
    for model in st.models():
        for seed in sc.seeds:
            if sc.mode == "full":
                for b in budgets:
                    runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}", model, seed, b, "full",
                                           {"steps": b}))
                continue
            top = budgets[-1]
            starts = sorted({branch_start(b, sc.decay_fraction) for b in budgets[:-1]})
            runs.append(PlannedRun(f"{model}_b{top:07d}_s{seed}", model, seed, top, "stable",
                                   {"steps": top, "schedule": "wsd", "decay_fraction": sc.decay_fraction,
                                    "extra_ckpt_steps": starts, "keep_state_steps": starts}))
            stable = runs[-1].name
            for b in budgets[:-1]:
                runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}", model, seed, b, "branch",
                                       {"steps": b, "schedule": "wsd", "decay_fraction": sc.decay_fraction},
                                       parent=stable))
            for b in sc.compare_full_steps:
                runs.append(PlannedRun(f"{model}_b{b:07d}_s{seed}_full", model, seed, b, "compare",
                                       {"steps": b}))
    return runs
