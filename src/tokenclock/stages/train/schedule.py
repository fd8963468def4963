"""Schedules as data: which steps get a checkpoint, and the learning rate at each step.

Pure functions; the trainer and the trace read them, and the checkpoint list is saved in the
manifest like Pythia's `extra-save-iters`.
"""
from __future__ import annotations

import math

import numpy as np

from tokenclock.errors import ConfigError


def checkpoint_steps(total_steps: int, per_decade: int, linear_every: int = 0,
                     include_zero: bool = True) -> list[int]:
    """Log-spaced steps 0, 1, ..., total_steps with `per_decade` points per factor of 10.

    Rounding merges neighbours at small steps, so the early grid is every integer until the
    log grid spreads out. `linear_every > 0` adds every multiple of it. The final step is always in.
    """
    if total_steps < 1:
        raise ConfigError(f"train.steps must be >= 1, got {total_steps}")
    if per_decade < 1:
        raise ConfigError(f"train.ckpt_per_decade must be >= 1, got {per_decade}")
    n = int(math.ceil(per_decade * math.log10(total_steps))) + 1
    logs = np.unique(np.round(np.logspace(0, math.log10(total_steps), max(n, 2))).astype(np.int64))
    steps = set(int(s) for s in logs if 1 <= s <= total_steps)
    steps.add(1)
    steps.add(total_steps)
    if include_zero:
        steps.add(0)
    if linear_every > 0:
        steps.update(range(linear_every, total_steps + 1, linear_every))
    return sorted(steps)


def zoom_steps(series: list[int], start: int, end: int, per_decade: int) -> list[int]:
    """The extra steps of a denser log-spaced schedule inside [start, end] (a replay zoom).

    Each interval (s0, s1) of `series` (a run's own checkpoint schedule, sorted) that overlaps
    [start, end] is split into m = round(per_decade * log10(s1 / s0)) equal parts in ln(step),
    rounded to integers (every integer at small steps). The series stays a subset of the denser
    schedule, so the merged axis keeps an even spacing in ln(step); points already in `series` or
    outside [start, end] are dropped. Depends on `series` only, so a rerun finds the same steps.
    """
    if per_decade < 1:
        raise ConfigError(f"train.zoom_ckpt_per_decade must be >= 1, got {per_decade}")
    have, out = set(series), set()
    for s0, s1 in zip(series[:-1], series[1:]):
        if s1 <= start or s0 >= end:
            continue
        lo = max(s0, 1)  # ln(0) is undefined: the interval (0, s1) refines from step 1
        m = max(1, round(per_decade * math.log10(s1 / lo)))
        for k in range(0 if lo > s0 else 1, m):
            p = int(round(lo * (s1 / lo) ** (k / m)))
            if start <= p <= end and p not in have:
                out.add(p)
    return sorted(out)


def lr_at(step: int, *, schedule: str, lr_peak: float, total_steps: int, warmup_steps: int,
          lr_min_ratio: float = 0.1, decay_fraction: float = 0.2) -> float:
    """Learning rate used for the update that takes the model from `step` to `step + 1`.

    cosine: linear warmup, then cosine to lr_min_ratio * lr_peak at total_steps.
    wsd: warmup, stable at lr_peak, then linear decay over the last decay_fraction of training
    (warmup-stable-decay; a cooldown branch is a WSD run with its decay placed earlier).
    constant: warmup then lr_peak.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lr_peak * (step + 1) / warmup_steps
    lr_min = lr_peak * lr_min_ratio
    if schedule == "constant":
        return lr_peak
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return lr_min + 0.5 * (lr_peak - lr_min) * (1 + math.cos(math.pi * t))
    if schedule == "wsd":
        decay_steps = max(1, int(round(decay_fraction * total_steps)))
        start = total_steps - decay_steps
        if step < start:
            return lr_peak
        t = min(1.0, (step - start) / decay_steps)
        return lr_peak + (lr_min - lr_peak) * t
    raise ConfigError(f"unknown train.schedule '{schedule}'", "use cosine, wsd or constant")


def cumulative_lr(steps: list[int], lrs_by_step) -> np.ndarray:
    """Sum of the learning rate over the updates before each listed step (step 0 -> 0)."""
    out = np.zeros(len(steps))
    total, s_prev = 0.0, 0
    for i, s in enumerate(steps):
        for t in range(s_prev, s):
            total += lrs_by_step(t)
        s_prev = s
        out[i] = total
    return out
