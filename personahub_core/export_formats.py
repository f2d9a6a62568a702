"""Export formats: what ``personahub export --format NAME`` writes. The core's own (jsonl, parquet, csv,
and hf, a Hugging Face dataset folder) register through the ``register_export_formats`` hook like any
plugin's; the command hands the registered ones to ``export.export``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .store import Store


class ExportFormat:
    """One format. ``write`` gets the open store and what ``export`` was asked for, writes ``out_path``
    whole or not at all, and returns the number of rows written."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Chooses a task's rows by their verdicts (--verified, --where); a format that cannot says so.
    selects_by_verdict: ClassVar[bool] = True

    def write(self, store: "Store", what: str, out_path: Path, *, full: bool, include_all: bool, quiet: bool,
              tasks: dict[str, type] | None, verified: bool, where: list[str]) -> int:
        raise NotImplementedError
