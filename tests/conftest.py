"""Shared fixtures: every test runs in its own empty folder with a clean PersonaHub environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from personahub_core.plugins import reset_registry
from personahub_core.testing import FakeBackend

PERSONAHUB = str(Path(sys.executable).parent / "personahub")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """An empty working folder, no stray settings, no leftover fake responder or plugin registry."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PERSONAHUB_") and name != "PERSONAHUB_CACHE_DIR":
            monkeypatch.delenv(name)
    FakeBackend.responder = None
    FakeBackend.calls = []
    reset_registry()
    yield
    FakeBackend.responder = None
    reset_registry()


def cli(*args: str, env: dict | None = None, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``personahub`` console script, as a user would."""
    result = subprocess.run(
        [PERSONAHUB, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"personahub {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


PERSONAS = [
    "A pediatric nurse in a rural clinic who organises vaccination days for families.",
    "A retired railway signal engineer who restores old lever frames as a hobby.",
    "A junior Rust developer learning async programming for a logistics startup.",
    "A beekeeper who sells heather honey at a weekly farmers' market.",
    "A high school physics teacher who coaches the robotics club after class.",
    "A freelance translator of Portuguese legal contracts working from home.",
]


@pytest.fixture
def personas_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "personas.jsonl", [{"persona": p} for p in PERSONAS])
