"""The corpus stage's config (the corpus section): where the text comes from and how it is
split. Reads and writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenclock.errors import ConfigError

MIN_DOC_CHARS = 256  # a max_chars cap never cuts a document shorter than this


@dataclass
class CorpusConfig:
    """Where the text comes from and how it is split. Saved in the run's manifest."""

    sources: list[str] = field(default_factory=list)
    """Empty = the built-in corpus. Otherwise text files (.txt/.md: one document each), folders
    (recursively *.txt, *.md, *.jsonl, *.parquet), .jsonl (one document per line, `text_field`),
    .parquet (one document per row, column `text_field`), `hf:NAME[:CONFIG][:SPLIT]` (a Hugging Face
    dataset; needs `datasets` and the network), or `builtin` (mix the built-in corpus in)."""
    text_field: str = "text"
    """Field (jsonl), column (parquet) or feature (hf:) that holds the text."""
    val_fraction: float = 0.05
    """Share of documents sent to validation, chosen by a hash of (seed, doc_id); in [0, 1)."""
    min_val_docs: int = 1
    """At least this many validation documents (the lowest hashes are promoted if needed)."""
    seed: int = 0
    """Seed of the split hash (a different seed gives a different, equally deterministic split)."""
    max_chars: int | None = None
    """Cap on the total characters (tests, demos): documents are sampled round-robin over sources
    and cut to a common length so the total fits; None = no cap."""
    cache_dir: str | None = None
    """Where the built-in corpus is cached; None = $XDG_CACHE_HOME/tokenclock or ~/.cache/tokenclock."""
    on_decode_error: str = "error"
    """Bytes that are not UTF-8: "error" stops with the file and byte offset; "replace" decodes
    them as U+FFFD and records the file in stats.json."""

    def __post_init__(self) -> None:
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        if not isinstance(self.sources, (list, tuple)) or not all(
                isinstance(s, str) and s.strip() for s in self.sources):
            raise ConfigError(f"corpus.sources must be a list of non-empty paths, got {self.sources!r}",
                              "write e.g. sources: [data/books, extra.jsonl]")
        self.sources = list(self.sources)
        for s in self.sources:
            if s.startswith("hf:") and not s[3:].split(":")[0]:
                raise ConfigError(f"corpus source {s!r} has no dataset name", "write hf:NAME[:CONFIG][:SPLIT]")
        if not self.text_field:
            raise ConfigError("corpus.text_field is empty", "name the field that holds the text, e.g. text")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"corpus.val_fraction must be in [0, 1), got {self.val_fraction}",
                              "use e.g. 0.05")
        if self.min_val_docs < 1:  # later stages trace and evaluate on validation text
            raise ConfigError(f"corpus.min_val_docs must be >= 1, got {self.min_val_docs}")
        if self.max_chars is not None and self.max_chars < 2 * MIN_DOC_CHARS:
            raise ConfigError(f"corpus.max_chars must be >= {2 * MIN_DOC_CHARS} or null, got {self.max_chars}")
        if self.on_decode_error not in ("error", "replace"):
            raise ConfigError(f"corpus.on_decode_error must be 'error' or 'replace', got {self.on_decode_error!r}")
