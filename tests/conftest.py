"""Shared fixtures: a small real-English corpus written by the tests (Python's own documentation
topics, shipped with every CPython), and one tiny pipeline run reused by the stage tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub name would otherwise retry for 46 s
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def texts_dir(tmp_path_factory) -> Path:
    from tokenclock.testing import write_sample_texts

    return write_sample_texts(tmp_path_factory.mktemp("texts"))


def tiny_overrides(texts_dir: Path, **extra) -> list[str]:
    """The tiny preset on the test corpus; small enough to train in seconds."""
    sets = [f"corpus.sources=[{texts_dir}]", "corpus.max_chars=null", "corpus.val_fraction=0.1",
            "tokens.vocab_size=512", "trace.n_seqs=48"]
    return sets + [f"{k}={v}" for k, v in extra.items()]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, texts_dir) -> Path:
    """corpus -> tokens -> train -> trace -> fit -> spectrum -> report, once per session."""
    from tokenclock.cli import main

    run = tmp_path_factory.mktemp("runs") / "tiny"
    sets = sum((["--set", s] for s in tiny_overrides(texts_dir)), [])
    assert main(["train", "--config", "tiny", "--out", str(run), "--quiet", *sets]) == 0
    assert main(["trace", str(run), "--config", "tiny", "--quiet", *sets]) == 0
    assert main(["fit", str(run), "--config", "tiny", "--quiet", *sets]) == 0
    assert main(["spectrum", str(run), "--quiet"]) == 0
    assert main(["report", str(run)]) == 0
    return run
