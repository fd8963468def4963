"""Shared setup for the benchmarks: a run directory trained on Python's own documentation text
(offline, shipped with CPython), so a benchmark never needs the network."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def doc_texts() -> Path:
    from tokenclock.stages.data.corpus import write_sample_texts

    return write_sample_texts(tempfile.mkdtemp(prefix="tokenclock-bench-texts-"))


def bench_config(preset: str, steps: int, batch: int, seq_len: int, extra: list[str] = ()):
    from tokenclock.config import load_config

    return load_config("tiny", [f"corpus.sources=[{doc_texts()}]", "corpus.max_chars=null",
                                "corpus.val_fraction=0.1", "tokens.vocab_size=4096",
                                f"model.preset={preset}", f"train.steps={steps}",
                                f"train.batch_size={batch}", f"train.seq_len={seq_len}",
                                "model.max_seq_len=1024", *extra])
