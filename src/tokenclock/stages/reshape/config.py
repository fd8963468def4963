"""The reshape stage's config (the reshape section): the strategies, the proxy's pool and the
knobs of each strategy. Reads and writes nothing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tokenclock.errors import ConfigError


@dataclass
class ReshapeConfig:
    """How the reference is probed and how the new run's batches are drawn."""

    strategy: str = "learnable-now"
    """One of STRATEGIES."""
    pool_size: int = 1024
    """Training windows (seq_len + 1 tokens, non-overlapping) traced in REF."""
    window: float = 0.2
    """Width of the sampling window: log-step fraction (learnable-now) or rank quantile
    (easy-to-hard, hard-to-easy)."""
    mix: float = 0.5
    """Share of each batch taken from the default uniform order (0 = pool only)."""
    sharpness: float = 1.0
    """Pool weights are raised to this power before normalising."""
    token_floor: float = 0.1
    """token-learnable: the loss weight of a token far from its learning window (already learned,
    not learnable yet, or never learned by the reference); 1 at the window's centre."""
    token_drop_nats: float = 0.5
    """token-learnable: an event of this drop (nats) or more gets the full weight; smaller ones less."""
    max_ckpts: int = 16
    """Reference checkpoints traced (a log-spaced subset, the last one included)."""
    n_bins: int = 32
    """Bins of each sequence's learning-time histogram."""
    seed: int | None = None
    """Schedule seed; None = the new run's train seed, the reference's (-1, the old spelling, means None)."""
    steps: int | None = None
    """New run's train.steps; None = the reference's (0, the old spelling, means None)."""
    batch_size: int | None = None
    """New run's train.batch_size; None = the reference's (0 means None)."""
    seq_len: int | None = None
    """New run's train.seq_len; None = the reference's (0 means None)."""
    trace_batch_size: int = 32
    """Pool sequences per forward pass."""
    device: str = "auto"
    """auto (CUDA, then MPS, then CPU) or a torch device name."""

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            self.seed = None
        for name in INHERITED:
            if getattr(self, name) == 0:
                setattr(self, name, None)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown reshape strategy '{self.strategy}'", f"use one of {', '.join(STRATEGIES)}")
        if not 0 <= self.mix <= 1:
            raise ConfigError(f"reshape mix must be in [0, 1], got {self.mix}")
        if not 0 < self.window <= 1:
            raise ConfigError(f"reshape window must be in (0, 1], got {self.window}")
        if not 0 <= self.token_floor <= 1 or self.token_drop_nats <= 0:
            raise ConfigError(f"reshape token_floor must be in [0, 1] and token_drop_nats > 0, got "
                              f"{self.token_floor} and {self.token_drop_nats}")
        if self.sharpness <= 0 or self.pool_size < 1 or self.max_ckpts < 4 or self.n_bins < 2:
            raise ConfigError("reshape needs sharpness > 0, pool_size >= 1, max_ckpts >= 4, n_bins >= 2")
        if any((getattr(self, n) or 0) < 0 for n in INHERITED) or self.trace_batch_size < 1:
            raise ConfigError("reshape steps, batch_size, seq_len must be >= 0 (0 = the reference's) "
                              "and trace_batch_size >= 1")

    def recorded(self) -> dict:
        """The config as SCHEDULE/meta.json records it, "the reference's" spelled as it always was
        there (seed -1; steps, batch_size, seq_len 0)."""
        return dataclasses.asdict(self) | {"seed": -1 if self.seed is None else self.seed} \
            | {n: getattr(self, n) or 0 for n in INHERITED}


STRATEGIES = ("learnable-now", "easy-to-hard", "hard-to-easy", "loss-based", "token-learnable", "uniform")


TOKEN_STRATEGIES = ("token-learnable",)  # strategies that write SCHEDULE/weights.npy


INHERITED = ("steps", "batch_size", "seq_len")  # None = the reference's train.<name>
