"""Token windows: which stretches of a token stream each training update, the validation loss and
the trace read. Pure functions of a seed, so every stage (and a resumed run) picks the same ones.
"""
from __future__ import annotations

import sys

import numpy as np

from tokenclock.errors import TrainingError


def batch_offsets(seed: int, step: int, n_tokens: int, batch_size: int, seq_len: int) -> np.ndarray:
    """Start offsets of the sequences of update `step`: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step, 0x7C])
    return rng.integers(0, n_tokens - seq_len - 1, size=batch_size, endpoint=True)


def gather(stream: np.ndarray, offsets: np.ndarray, seq_len: int) -> np.ndarray:
    """(len(offsets), seq_len + 1) int64 array of the token windows starting at `offsets`."""
    idx = np.asarray(offsets)[:, None] + np.arange(seq_len + 1)[None, :]
    return np.asarray(stream[idx], dtype=np.int64)


def make_batch(stream: np.ndarray, offsets: np.ndarray, seq_len: int):
    """(batch, seq_len + 1) int64 tensor of token windows."""
    import torch

    return torch.from_numpy(gather(stream, offsets, seq_len))


def val_offsets(seed: int, n_tokens: int, n_seqs: int, seq_len: int) -> np.ndarray:
    """Non-overlapping, seeded validation windows (shared by train's val loss and the trace)."""
    n_slots = (n_tokens - 1) // (seq_len + 1)
    if n_slots < 1:
        raise TrainingError(f"the validation split has {n_tokens} tokens, fewer than one sequence "
                            f"of {seq_len + 1}", "use a larger corpus or a smaller seq_len")
    rng = np.random.default_rng([seed, 0x5A1])
    slots = np.sort(rng.permutation(n_slots)[:n_seqs])
    return slots * (seq_len + 1)


def val_windows(stream: np.ndarray, seed: int, n_seqs: int, seq_len: int, *,
                source: str = "the validation split", setting: str = "trace.n_seqs") -> np.ndarray:
    """The traced validation windows: (n, seq_len + 1) int64, n = min(n_seqs, what `stream` holds).

    The one builder of the windows every trace scores (a run's trace, an external series, a study's
    shared inputs, the in-loop tracker); train's validation loss takes the same offsets. Fewer
    windows than asked for is a printed warning naming `source` and `setting`, not an error."""
    offs = val_offsets(seed, len(stream), n_seqs, seq_len)
    if len(offs) < n_seqs:
        print(f"tokenclock: warning: {source} holds {len(offs)} sequences of {seq_len + 1} tokens, "
              f"fewer than {setting}={n_seqs}; tracing {len(offs)}", file=sys.stderr)
    return gather(stream, offs, seq_len)
