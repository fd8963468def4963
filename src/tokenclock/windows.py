"""Token windows: which stretches of a token stream each training update, the validation loss and
the trace read. Pure functions of a seed, so every stage (and a resumed run) picks the same ones.
"""
from __future__ import annotations

import numpy as np

from tokenclock.errors import TrainingError


def batch_offsets(seed: int, step: int, n_tokens: int, batch_size: int, seq_len: int) -> np.ndarray:
    """Start offsets of the sequences of update `step`: a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step, 0x7C])
    return rng.integers(0, n_tokens - seq_len - 1, size=batch_size, endpoint=True)


def make_batch(stream: np.ndarray, offsets: np.ndarray, seq_len: int):
    """(batch, seq_len + 1) int64 tensor of token windows."""
    import torch

    idx = offsets[:, None] + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(np.asarray(stream[idx], dtype=np.int64))


def val_offsets(seed: int, n_tokens: int, n_seqs: int, seq_len: int) -> np.ndarray:
    """Non-overlapping, seeded validation windows (shared by train's val loss and the trace)."""
    n_slots = (n_tokens - 1) // (seq_len + 1)
    if n_slots < 1:
        raise TrainingError(f"the validation split has {n_tokens} tokens, fewer than one sequence "
                            f"of {seq_len + 1}", "use a larger corpus or a smaller seq_len")
    rng = np.random.default_rng([seed, 0x5A1])
    slots = np.sort(rng.permutation(n_slots)[:n_seqs])
    return slots * (seq_len + 1)
