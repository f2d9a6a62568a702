"""The OpenAI-compatible backend as the HTTP tests build it: against a FaultServer on 127.0.0.1, quick
retries, and no key or chat setting leaking in from the environment."""

from __future__ import annotations

import pytest

from personahub_core.backends.openai_http import OpenAIBackend
from personahub_core.settings import Settings


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(OpenAIBackend, "backoff_base", 0.01)
    for var in ("PERSONAHUB_OPENAI_CHAT", "PERSONAHUB_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def make_backend(url: str, *, request_timeout: float, max_retries: int, **overrides: object) -> OpenAIBackend:
    fields = {"backend": "openai", "base_url": url, "model": "test-model", "request_timeout": request_timeout,
              "batch_size": 8, "max_retries": max_retries, **overrides}
    return OpenAIBackend(Settings(**fields))
