"""The tokens stage's config (the tokens section): how text becomes token ids. Reads and writes
nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from tokenclock.errors import ConfigError


@dataclass
class TokensConfig:
    """How text becomes token ids."""

    vocab_size: int = 4096
    """BPE vocabulary size (including the end-of-text token)."""
    tokenizer: str | None = None
    """An existing tokenizer.json or model directory; None = train a byte-level BPE on the corpus."""
    min_frequency: int = 2
    """BPE merges need a pair seen at least this often."""
    batch_docs: int = 64
    """Documents per encode_batch call."""

    def __post_init__(self) -> None:
        if self.tokenizer is None and not 256 < self.vocab_size <= 1 << 20:
            raise ConfigError(f"tokens.vocab_size must be in (256, 1048576], got {self.vocab_size}",
                              "byte-level BPE needs at least the 256 byte tokens plus merges")
