"""The sample corpus and few-shot demonstrations written by the PersonaHub team, bundled as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from pathlib import Path


def data_dir() -> Path:
    return Path(str(files(__name__)))


def corpus_path() -> Path:
    return data_dir() / "corpus.jsonl"


def personas_path() -> Path:
    return data_dir() / "personas.jsonl"


@cache
def demonstrations(name: str) -> list[dict]:
    """The few-shot demonstrations for one prompt, e.g. ``demonstrations("math")``."""
    path = data_dir() / "demonstrations" / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
