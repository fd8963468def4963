"""Helpers for tests and examples: a small real-English corpus written from Python's own
documentation topics (shipped with every CPython), so no test needs the network.
"""
from __future__ import annotations

from pathlib import Path


def write_sample_texts(folder: str | Path, min_chars: int = 500) -> Path:
    """Write a small offline English corpus into `folder`: Python's own documentation topics
    (shipped with every CPython), one `<topic>.txt` per topic longer than `min_chars`. Tests,
    benchmarks and the crash test train on it without npm; pass the folder as a corpus source."""
    from pydoc_data.topics import topics

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        if len(text) > min_chars:
            (folder / f"{name}.txt").write_text(text)
    return folder
