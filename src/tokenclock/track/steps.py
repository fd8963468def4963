"""Which steps the tracker scores: log-spaced per decade like train.ckpt_per_decade (given the total
steps, the same list `tokenclock train` checkpoints at; without it, the open-ended grid
round(10^(k / per_decade))), an explicit increasing list, or a callable step -> bool. Pure; no files.
"""
from __future__ import annotations

import math
from typing import Callable

from tokenclock.errors import ConfigError
from tokenclock.stages.train.schedule import checkpoint_steps


class Schedule:
    """`wants(step)`: whether the tracker scores `step`; `listed`: the steps, when known."""

    def __init__(self, steps: int | list[int] | Callable[[int], bool] | None, per_decade: int = 16):
        self.fn: Callable[[int], bool] | None = None
        self.listed: list[int] | None = None
        self.per_decade = per_decade
        if per_decade < 1:
            raise ConfigError(f"per_decade must be >= 1, got {per_decade}")
        if callable(steps):
            self.fn, self.kind = steps, "callable"
        elif steps is None:
            self.kind = f"log grid, {per_decade} per decade"
        elif isinstance(steps, int):
            self.listed, self.kind = checkpoint_steps(steps, per_decade), f"log, {per_decade} per decade to {steps}"
        else:
            self.listed, self.kind = _increasing([int(s) for s in steps]), "list"
        self._set = set(self.listed) if self.listed is not None else None

    def wants(self, step: int) -> bool:
        if self._set is not None:
            return step in self._set
        if self.fn is not None:
            return bool(self.fn(step))
        return step == 0 or _on_log_grid(step, self.per_decade)

    def describe(self) -> dict:
        return {"kind": self.kind, "steps": self.listed}


def _increasing(steps: list[int]) -> list[int]:
    if not steps:
        raise ConfigError("the tracker's schedule (steps=) is empty", "list at least 4 steps, or pass the total steps")
    if steps[0] < 0:
        raise ConfigError(f"the tracker's schedule starts at step {steps[0]}", "steps must be >= 0")
    for a, b in zip(steps[:-1], steps[1:]):
        if b <= a:
            raise ConfigError(f"the tracker's schedule is not increasing: step {b} follows step {a}",
                              "sort the steps and drop duplicates")
    return steps


def _on_log_grid(step: int, per_decade: int) -> bool:
    """Whether step = round(10^(k / per_decade)) for some integer k >= 0."""
    if step < 1:
        return False
    k = round(per_decade * math.log10(step))
    return any(round(10 ** (j / per_decade)) == step for j in (k - 1, k, k + 1) if j >= 0)
