"""The spectrum stage's config (the spectrum section): the learning-time spectrum and the
reconstruction's scores. Reads and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from tokenclock.errors import ConfigError


@dataclass
class SpectrumConfig:
    """How the spectrum stage measures, reconstructs and scores."""

    smoothing: int = 2
    """Half-window, in checkpoints, of the local quadratic whose slope is the measured -dL/du
    (a Savitzky-Golay derivative on the non-uniform u grid); 0 = plain central differences."""
    bandwidth: float | None = None
    """Std of the Gaussian kernel for rho(u), in units of u = ln x; None = Silverman's rule on the
    event midpoints weighted by |a|."""
    n_grid: int = 200
    """Points of the uniform u grid on which rho(u) is written (density.parquet)."""
    heldout: bool = True
    """Refit events on every other kept checkpoint and score the reconstruction on the rest."""
    block_size: int = 4
    """Also hold out checkpoints in blocks of this many consecutive ones (every other block, the
    first and last fitted) and score the refit there; 0 = off."""
    token_split: bool = True
    """Score how the events of a seeded half of the tokens predict the other half's -dL/du."""
    leave_one_out: bool = False
    """Also refit the events once per checkpoint without it and score the reconstruction at the
    left-out point (K refits: for sparse axes, where every other point leaves too few to fit;
    a study turns it on for its D and M axes)."""
    after_step: int | None = None
    """Post-warmup scores use checkpoints with step >= after_step; None = the run's
    train.warmup_steps from the manifest (0 if absent). Ignored when the axis table has no step."""
    powerlaw_grid: int = 200
    """Grid points over E in [0, min L) per refinement round of the power-law fit."""
    chunk_columns: int = 65536
    """Token columns read at once from the (memory-mapped) loss matrix."""

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ConfigError(f"spectrum.smoothing must be >= 0, got {self.smoothing}",
                              "use 0 for plain finite differences, 2 for a 5-point quadratic")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ConfigError(f"spectrum.bandwidth must be > 0 or null, got {self.bandwidth}",
                              "a kernel std in ln-axis units, e.g. 0.1; null picks one")
        if self.n_grid < 10:
            raise ConfigError(f"spectrum.n_grid must be >= 10, got {self.n_grid}")
        if self.after_step is not None and self.after_step < 0:
            raise ConfigError(f"spectrum.after_step must be >= 0 or null, got {self.after_step}")
        if self.powerlaw_grid < 10:
            raise ConfigError(f"spectrum.powerlaw_grid must be >= 10, got {self.powerlaw_grid}")
        if self.block_size < 0 or self.block_size == 1:
            raise ConfigError(f"spectrum.block_size must be 0 (off) or >= 2, got {self.block_size}",
                              "1 would be the alternating held-out split spectrum.heldout already scores")
        if self.chunk_columns < 1:
            raise ConfigError(f"spectrum.chunk_columns must be >= 1, got {self.chunk_columns}")
