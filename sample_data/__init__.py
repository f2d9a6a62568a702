"""The sample corpus and personas written by the PersonaHub team, bundled as package data. (Each plugin
ships its own few-shot demonstrations: ``personahub_core.prompting.demonstrations``.)"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_dir() -> Path:
    return Path(str(files(__name__)))


def corpus_path() -> Path:
    return data_dir() / "corpus.jsonl"


def personas_path() -> Path:
    return data_dir() / "personas.jsonl"


def multilingual_personas_path() -> Path:
    """Personas in scripts written without spaces (Chinese, Japanese, Thai)."""
    return data_dir() / "personas-multilingual.jsonl"
