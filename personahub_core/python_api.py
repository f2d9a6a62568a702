"""The Python API a notebook uses (``import personahub``): run a task, then read the store as Arrow
tables. The same checks and the same rows as the command line; nothing here is command-line only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from . import api
from .export import export_query, store_stats
from .plugins import get_registry
from .settings import load_settings
from .store import Store


def run(task: str, options: dict[str, Any] | None = None, *, limit: int | None = None,
        where: list[str] | str | None = None, retry_failed: bool = False, quiet: bool = True,
        **settings: Any) -> dict:
    """Run one task (a name, or a recipe's path) and return its summary, the ``--json`` line of
    ``personahub run``. ``options`` are the task's own (``{"topic": "geometry"}``); keyword arguments
    are settings, named as in ``personahub.toml`` (``db``, ``backend``, ``model``, ``batch_size``...).
    A bad task, option or setting raises ``personahub.UsageError`` before anything is written."""
    wheres = [where] if isinstance(where, str) else where
    return api.run(task, [], options=options or {}, quiet=quiet, limit=limit, where=wheres,
                   retry_failed=retry_failed, **settings)


class OpenStore:
    """A store opened for reading. Every method returns Arrow (``.to_pandas()``, ``.to_pylist()``, or
    polars/duckdb directly), in the rows and columns ``personahub export`` writes."""

    def __init__(self, db: str | Path | None = None):
        self._store = Store(load_settings(db=db).db, read_only=True)

    def personas(self, *, full: bool = False, include_duplicates: bool = False) -> pa.Table:
        """Personas (``persona``; with ``full``, their provenance); those a deduplicator marked are left
        out unless ``include_duplicates``."""
        return self._table("personas", full, include_duplicates)

    def rows(self, task: str, *, full: bool = False, include_failed: bool = False) -> pa.Table:
        """A task's rows in PersonaHub's released schema (``input persona``, ``synthesized text``,
        ``description``); with ``full``, their provenance; failed and rejected rows only if asked."""
        return self._table(task, full, include_failed)

    def runs(self) -> list[dict]:
        """Runs, newest first, with their counts and status."""
        return self._store.runs()

    def stats(self) -> dict:
        """What ``personahub stats --json`` prints."""
        return store_stats(self._store)

    def _table(self, what: str, full: bool, include_all: bool) -> pa.Table:
        tasks = get_registry().tasks  # a task writes its rows in its released encoding, rebuilds its prompts
        query = export_query(self._store, what, full, include_all, tasks)
        return self._store.export_relation(query).to_arrow_table()

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "OpenStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(db: str | Path | None = None) -> OpenStore:
    """The store (``./personahub.duckdb``, ``PERSONAHUB_DB`` or ``db``) opened for reading."""
    return OpenStore(db)
