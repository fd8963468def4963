"""Shared by the trace tests: the tiny GPT-NeoX step folders of test_series.py, built once per
session for the other modules (test_series.py keeps its own module fixture), and huggingface_hub's
HTTP client answering from recorded responses."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def series(tmp_path_factory):
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
