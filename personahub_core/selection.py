"""What tasks work through: personas (the store's one selection, ``--where`` filters from ``where.py``)
and, for verifiers, another task's finished rows. Both come a chunk at a time, so a run over 10^6 rows
never holds them all."""

from __future__ import annotations

import json
from typing import Iterator

from .errors import UsageError
from .store import Store


def select_personas(store: Store, where: list[str] | None = None, include_duplicates: bool = False) -> list[dict]:
    """Personas in creation order, duplicates and rejects left out unless asked for."""
    return [p for chunk in iter_persona_chunks(store, where, include_duplicates) for p in chunk]


def iter_persona_chunks(store: Store, where: list[str] | None = None, include_duplicates: bool = False,
                        chunk: int = 10_000) -> Iterator[list[dict]]:
    """The same personas (id, persona, origin, hop), a chunk at a time (see ``Store.persona_chunks``)."""
    return store.persona_chunks(where, include_marked=include_duplicates, chunk=chunk)


def iter_row_chunks(store: Store, task: str, chunk: int = 10_000) -> Iterator[list[dict]]:
    """A task's finished rows (``key``, its ``persona``, ``text``, the whole ``output``), a chunk at a
    time in key order, for a verifier to judge. Each chunk starts after the last key of the one
    before, so nothing stays open between chunks; a task with no finished rows is a usage error."""
    finished = store.finished_tasks()
    if task not in finished:
        raise UsageError(f"--task {task}: no finished rows of '{task}' to judge (tasks with rows: "
                         f"{', '.join(finished) or 'none yet'})")
    last = ""
    while rows := store.finished_rows(task, after=last, limit=chunk):
        for row in rows:
            row["output"] = json.loads(row["output"]) if isinstance(row["output"], str) else row["output"]
        yield rows
        last = rows[-1]["key"]
