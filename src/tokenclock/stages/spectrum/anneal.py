"""An annealing term shared by every token: the loss drop that a decaying learning rate gives all
tokens at once, fitted once per run beside the per-token events (never in their place).

The mean loss follows a schedule-aware law (Tissue et al. 2024, "Scaling law with learning rate
annealing"; the multi-power law of Luo et al. 2025 refines the same two terms):

    L(t) = L0 + A S1(t)^-alpha - C S2(t)

S1 is the area under the learning rate (sum of lr / lr_peak over the updates before t); S2 is
the annealing area, the accumulated decrease of the learning rate with momentum lam:
m_t = lam m_{t-1} + (lr_{t-1} - lr_t) / lr_peak, S2(t) = sum of m up to t (warmup, where the lr
rises, adds nothing). lam is chosen from ANNEAL_MOMENTA by the fit. The shared term's share of a
token's loss is C S2(t), the same for every token: subtracting it leaves what the events must carry.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tokenclock.errors import DataError
from tokenclock.stages.train.config import TrainConfig

ANNEAL_MOMENTA = (0.0, 0.9, 0.99, 0.999)
"""Momenta of the annealing area tried per run (Tissue et al. use 0.999 on long runs)."""


def lr_per_update(train: dict, last_step: int) -> np.ndarray:
    """The learning rate of every update 0 .. last_step - 1 of a run with train config `train`
    (the `train` section as a dict, as a run's manifest records it; missing keys take their
    defaults), by the trainer's own schedule (TrainConfig.lr)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    tc = TrainConfig(**{k: v for k, v in train.items() if k in names})
    return np.array([tc.lr(s) for s in range(int(last_step))], np.float64)


def schedule_areas(lrs: np.ndarray, steps: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(S1, S2) at each checkpoint step: the forward area and the annealing area (module
    docstring), both in units of lr_peak x updates."""
    peak = float(lrs.max()) if len(lrs) else 1.0
    x = lrs / peak
    s1 = np.concatenate([[0.0], np.cumsum(x)])                 # area before update t
    drop = np.concatenate([[0.0], np.clip(x[:-1] - x[1:], 0, None)])   # decrease at update t
    m = np.zeros_like(x)
    acc = 0.0
    for t in range(len(x)):
        acc = lam * acc + drop[t]
        m[t] = acc
    s2 = np.concatenate([[0.0], np.cumsum(m)])
    steps = np.asarray(steps, np.int64)
    if steps.max(initial=0) > len(lrs):
        raise DataError(f"checkpoint step {int(steps.max())} lies past the schedule's {len(lrs)} updates",
                        "pass the run's own train config")
    return s1[steps], s2[steps]


def fit_mean_law(L: np.ndarray, steps: np.ndarray, lrs: np.ndarray, mask: np.ndarray) -> dict:
    """Fit L0 + A S1^-alpha - C S2 (C >= 0) to the mean loss L at the checkpoints in `mask`, for
    every momentum in ANNEAL_MOMENTA; returns the best fit's parameters, its momentum, its R^2
    on the masked points and S2 at every checkpoint (the shared term is C x s2)."""
    from scipy.optimize import least_squares

    L = np.asarray(L, np.float64)
    mask = np.asarray(mask, bool)
    if mask.sum() < 5:
        raise DataError(f"the shared annealing term needs >= 5 checkpoints to fit, got {int(mask.sum())}",
                        "trace more checkpoints after warmup")
    best = None
    for lam in ANNEAL_MOMENTA:
        s1, s2 = schedule_areas(lrs, steps, lam)
        s1 = np.maximum(s1, 1e-9)
        y, a1, a2 = L[mask], s1[mask], s2[mask]

        def resid(p, a1=a1, a2=a2, y=y):
            return p[0] + p[1] * a1 ** -p[2] - p[3] * a2 - y

        x0 = [float(y.min()), float(max(y.max() - y.min(), 1e-3)) * float(a1.min()) ** 0.3, 0.3, 0.0]
        r = least_squares(resid, x0, bounds=([-np.inf, 0, 1e-3, 0], [np.inf, np.inf, 3.0, np.inf]))
        sse = float((r.fun ** 2).sum())
        if best is None or sse < best["sse"]:
            sst = float(((y - y.mean()) ** 2).sum())
            best = {"L0": float(r.x[0]), "A": float(r.x[1]), "alpha": float(r.x[2]), "C": float(r.x[3]),
                    "momentum": lam, "sse": sse, "r2": 1 - sse / sst if sst > 0 else float("nan"), "s2": s2}
    return best
