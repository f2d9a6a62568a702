"""pytest fixtures for PersonaHub and its plugins: every test runs in its own empty folder with a clean
PersonaHub environment (no stray PERSONAHUB_* settings, fake responder or plugin registry)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .plugins import reset_registry
from .testing import PERSONAS, FakeBackend, run_task, write_jsonl


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """An empty working folder, no stray settings, no leftover fake responder or plugin registry."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PERSONAHUB_") and name != "PERSONAHUB_CACHE_DIR":
            monkeypatch.delenv(name)
    FakeBackend.responder = FakeBackend.latency = None
    FakeBackend.calls = []
    reset_registry()
    yield
    FakeBackend.responder = FakeBackend.latency = None
    reset_registry()


@pytest.fixture
def personas_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "personas.jsonl", [{"persona": p} for p in PERSONAS])


@pytest.fixture
def personas_store(tmp_path, personas_file) -> Path:
    """A store holding the six test personas, imported as ``personahub run --plugin import`` would."""
    path = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(personas_file)], db=path)
    return path
