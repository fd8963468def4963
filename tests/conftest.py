"""Shared fixtures: a small real-English corpus written by the tests (Python's own documentation
topics, shipped with every CPython), one tiny pipeline run reused by the stage tests, the tiny
checkpoint series of the trace tests, and huggingface_hub's client answering recorded responses."""
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


@pytest.fixture(scope="session")
def series(tmp_path_factory):
    """The tiny GPT-NeoX step folders of tests/stages/trace/test_series.py, built once for the other
    trace test modules (test_series.py keeps its own module fixture)."""
    from test_series import series as module_fixture

    return module_fixture.__wrapped__(tmp_path_factory)


@pytest.fixture
def recorded_hub(monkeypatch, tmp_path):
    """huggingface_hub's HTTP client answering from recorded responses (no network)."""
    httpx2 = pytest.importorskip("httpx2", reason="huggingface_hub>=1 (its HTTP client)")
    from huggingface_hub import constants, set_client_factory
    from huggingface_hub.utils import _http

    answers: dict[str, object] = {}
    asked: list[str] = []

    def handler(request):
        path = request.url.path
        asked.append(path)
        if path in answers:
            return httpx2.Response(200, json=answers[path])
        return httpx2.Response(404, json={"error": "Revision Not Found"}, headers={"x-error-code": "RevisionNotFound"})

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False, raising=False)
    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(handler)))
    yield answers, asked
    set_client_factory(_http.default_client_factory)
