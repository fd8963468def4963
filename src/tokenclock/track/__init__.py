"""tokenclock.track: per-token learning curves from any training loop (plain PyTorch, Hugging Face
Trainer, Lightning), written in-loop as the same RUN/trace/ a checkpoint series gives. The
framework adapters load their framework only when named.
"""
from __future__ import annotations

from tokenclock.track.tracker import Tracker

__all__ = ["HFCallback", "LightningCallback", "Tracker"]


def __getattr__(name: str):
    if name == "HFCallback":
        from tokenclock.track.hf import HFCallback

        return HFCallback
    if name == "LightningCallback":
        from tokenclock.track.lightning import LightningCallback

        return LightningCallback
    raise AttributeError(f"module 'tokenclock.track' has no attribute {name!r}")
