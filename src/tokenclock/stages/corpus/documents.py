"""What a corpus is made of: the Document, the file kinds a folder is read for, and the one text
normalisation every reader applies. Documents travel between stages as parquet tables (doc_id, source, text).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

FILE_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")




@dataclass(frozen=True)
class Document:
    """One document: the unit of the train/val split."""

    doc_id: str  # unique within a corpus, stable across machines (no absolute paths)
    source: str  # short source name: gutenberg, sotu, brown, or the stem of a user's file/folder
    text: str






def document_columns(docs: list[Document]) -> dict:
    import pyarrow as pa  # lazy: pyarrow takes 0.3 s to import

    return {name: pa.array([getattr(d, name) for d in docs], type=pa.string())
            for name in ("doc_id", "source", "text")}



def normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()



def doc_unit(seed: int, doc_id: str) -> float:
    """A uniform number in [0, 1) from (seed, doc_id); the same on every machine."""
    digest = hashlib.sha256(f"{seed}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64
