"""What a Trainer trains on (TrainData): the arrays the train stage reads from RUN/tokens/ and
train.data_schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class TrainData:
    """What a Trainer trains on (the stage reads it from RUN/tokens/ and train.data_schedule)."""

    stream: np.ndarray
    """The training token stream (tokens/train.npy, memory-mapped)."""
    val_batch: Any
    """(val_seqs, seq_len + 1) int64 tensor of the validation windows every checkpoint scores."""
    vocab_size: int
    train_tokens: int
    """Tokens in the training split (for the summary's epochs)."""
    eos_id: int | None = None
    schedule: np.ndarray | None = None
    """(steps, batch_size) sequence start offsets into `stream`; None = seeded uniform sampling."""
    hf_tok: Any = None
    """The transformers tokenizer saved into every checkpoint folder (only `checkpoint` needs it)."""
    token_weights: np.ndarray | None = None
    """(steps, batch_size, seq_len) per-token loss weights (SCHEDULE/weights.npy); None = the plain mean."""
