"""The trace stage's config (the trace section): which validation tokens are traced, and how.
Reads and writes nothing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tokenclock.errors import ConfigError
from tokenclock.rundir import RAW, check_series


@dataclass
class TraceConfig:
    """Which validation tokens are traced, and how. Saved in the run's manifest with seq_len and
    seed resolved (`resolved`)."""

    n_seqs: int = 400
    """Validation sequences; every position of each is traced."""
    seq_len: int | None = None
    """Tokens per sequence; None = train.seq_len of the run (0, the old spelling, means None)."""
    batch_size: int = 32
    """Sequences per forward pass."""
    seed: int | None = None
    """Which sequences (val_offsets' seed); None = the run's seed (-1, the old spelling, means None)."""
    dtype: str = "auto"
    """auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32."""
    device: str = "auto"
    """auto (CUDA when available, else CPU) or a torch device name."""
    context_tokens: int = 8
    """Left context shown beside each token in tables and the report."""
    prefetch: bool = True
    """Load the next checkpoint while scoring this one (two models in host memory at once: set
    false for models near the memory size)."""
    weights: str = RAW
    """Which weight series `tokenclock trace RUN` traces (its --weights flag): raw (RUN/ckpt/ ->
    RUN/trace/) or avg (the averaged weights train.avg keeps, RUN/ckpt_avg/ -> RUN/trace_avg/; fit,
    spectrum and report then take --weights avg). A run traced both ways keeps both loss matrices.
    In Python, a RunDir names its own series: `trace(RunDir(run, weights="avg"))`."""

    def __post_init__(self) -> None:
        if self.seq_len == 0:
            self.seq_len = None
        if self.seed is not None and self.seed < 0:
            self.seed = None
        if self.n_seqs < 1 or self.batch_size < 1 or (self.seq_len is not None and self.seq_len < 0):
            raise ConfigError("trace.n_seqs and trace.batch_size must be >= 1, trace.seq_len >= 0")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"unknown trace.dtype '{self.dtype}'", "use auto, bf16 or fp32")
        check_series(self.weights, "trace.weights", ConfigError)

    def resolved(self, seq_len: int, seed: int) -> "TraceConfig":
        """This config with seq_len and seed taken from the run (the given values) where None."""
        return dataclasses.replace(self, seq_len=seq_len if self.seq_len is None else self.seq_len,
                                   seed=seed if self.seed is None else self.seed)
