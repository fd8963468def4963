"""Helpers for tests and examples: a small real-English corpus written from Python's own
documentation topics (shipped with every CPython), so no test needs the network, and the import of
a script (a benchmark, a docs hook) by its path.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


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


def load_script(path: str | Path) -> ModuleType:
    """Import the Python file at `path` (a script outside the package: benchmarks/*.py,
    scripts/*.py) as a module named after it, its folder importable first (a benchmark imports its
    siblings, e.g. benchmarks/_common.py)."""
    path = Path(path)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
