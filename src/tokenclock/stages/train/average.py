"""Averaged weights (train.avg): the power-function EMA of Karras et al. 2024 (EDM2), whose window
grows with the step, so on a log-spaced checkpoint series it is a constant width and a constant lag
in ln(step). After update t (t = step + 1) the average is

    avg_t = beta_t avg_{t-1} + (1 - beta_t) theta_t,   beta_t = (1 - 1/t)^(gamma + 1),

which is the average of theta_1..theta_t weighted by tau^gamma: relative standard deviation
sigma_rel (train.avg_sigma_rel) and mean lag t / (gamma + 2) (a shift of about sigma_rel in
ln(step)). The averaged model is saved beside each checkpoint as RUN/ckpt_avg/step_XXXXXXX/ (a
Hugging Face folder like the raw one); resuming reloads it from there, bit for bit (float32).
torch is imported inside the methods (start-up time).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np

from tokenclock.errors import RunDirError
from tokenclock.rundir import avg_sibling


def gamma_for(sigma_rel: float) -> float:
    """The exponent gamma whose power-function profile tau^gamma on [0, t] has relative standard
    deviation sigma_rel: the largest real root of (g+2)^2 (g+3) sigma_rel^2 = g + 1."""
    s2 = 1.0 / (sigma_rel * sigma_rel)
    roots = np.roots([1.0, 7.0, 16.0 - s2, 12.0 - s2])
    real = [float(r.real) for r in roots if abs(r.imag) < 1e-9 and r.real > -1]
    return max(real)


def sigma_rel_of(gamma: float) -> float:
    """The relative standard deviation of the profile tau^gamma (EDM2, eq. 3)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def lag_ln(gamma: float) -> float:
    """The averaged weights' mean position in ln(step) behind the step they are saved at:
    -ln((gamma + 1) / (gamma + 2)), the lag of the profile's mean (constant along the run)."""
    return -math.log((gamma + 1) / (gamma + 2))


class WeightAverage:
    """A float32 copy of the model that follows the training weights by the power-function EMA.
    `update(t)` after optimizer update number t (1-based); `load(folder)` from a saved average."""

    def __init__(self, model, sigma_rel: float):
        import torch

        self.gamma = gamma_for(sigma_rel)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._src = list(model.parameters())  # tied weights appear once (parameters() dedups)
        self._dst = list(self.model.parameters())
        if len(self._src) != len(self._dst) or any(a.shape != b.shape for a, b in zip(self._src, self._dst)):
            raise RuntimeError("the averaged model's parameters do not line up with the model's")
        self._torch = torch

    def beta(self, t: int) -> float:
        """The decay of update t: (1 - 1/t)^(gamma + 1); 0 at t = 1 (the average starts at theta_1)."""
        return (1.0 - 1.0 / t) ** (self.gamma + 1) if t > 1 else 0.0

    def update(self, t: int) -> None:
        """avg <- beta_t avg + (1 - beta_t) theta (in place, one fused op over all parameters)."""
        with self._torch.no_grad():
            self._torch._foreach_lerp_(self._dst, [p.detach() for p in self._src], 1.0 - self.beta(t))

    def reset(self) -> None:
        """Start the average at the current weights (a run's step 0, or a branch without a saved average)."""
        with self._torch.no_grad():
            for d, s in zip(self._dst, self._src):
                d.copy_(s.detach())

    def load(self, folder: Path, tied: bool) -> None:
        """The average saved in a checkpoint folder (ckpt_avg/step_X/)."""
        from tokenclock.stages.train.checkpoint import load_weights

        load_weights(self.model, folder, tied)

    def resume(self, own: Path | None, init_src: Path | None, tied: bool) -> None:
        """The average at the run's start: its own ckpt_avg/step_<start> when resuming (`own`), the
        ckpt_avg/ sibling of train.init_from's checkpoint (else that checkpoint's weights: the
        average restarts there), or the seeded init (the copy made at construction)."""
        if own is not None:
            if not own.is_dir():
                raise RunDirError(f"{own} is missing, so the averaged weights cannot resume",
                                  "the run was trained without train.avg: keep its setting, or use a new --out")
            self.load(own, tied)
        elif init_src is not None:
            sib = avg_sibling(init_src)
            if sib.is_dir():
                self.load(sib, tied)
            else:
                print(f"tokenclock: warning: {init_src} has no averaged weights ({sib}); the average "
                      "starts from its weights")

    def info(self) -> dict:
        """What the sidecar of an averaged checkpoint records about the average."""
        return {"kind": "ema", "sigma_rel": sigma_rel_of(self.gamma), "gamma": self.gamma,
                "lag_ln_step": lag_ln(self.gamma)}
