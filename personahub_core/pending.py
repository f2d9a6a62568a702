"""Which work items still need doing: keys checked against the store a chunk at a time."""

from __future__ import annotations

import pickle
import tempfile
from contextlib import contextmanager
from typing import IO, Iterable, Iterator

from .tasks import Context, WorkItem

CHECK_CHUNK = 5000


def pending_chunks(ctx: Context, items: Iterable[WorkItem], budget: int | None) -> Iterator[list[WorkItem]]:
    """The items not yet stored, ``budget`` at most (None: all), a chunk at a time: one query per chunk
    answers which keys are stored, and nothing here holds more than a chunk, so a run over 10^6 items
    can stream."""
    wanted = budget
    chunk: list[WorkItem] = []

    def check() -> list[WorkItem]:
        keys = [i.key for i in chunk]
        done = ctx.core_store.existing_keys(keys, retry_failed=ctx.retry_failed)
        earlier = ctx.core_store.failed_attempts(keys)
        ctx.stats.items_skipped += len(done)
        if not ctx.retry_failed:
            ctx.stats.items_skipped_failed += len(earlier)  # skipped too, but failures are not results
        todo = [item for item in chunk if item.key not in done]
        for item in todo:
            item.earlier_runs = earlier.get(item.key, 0)
        chunk.clear()
        return todo if wanted is None else todo[:wanted]

    for item in items:
        chunk.append(item)
        if len(chunk) >= CHECK_CHUNK:
            todo = check()
            if todo:
                yield todo
            if wanted is not None:
                wanted -= len(todo)
                if wanted <= 0:
                    return
    if chunk:
        todo = check()
        if todo:
            yield todo


@contextmanager
def spilled(chunks: Iterable[list[WorkItem]], folder: str | None = None) -> Iterator[tuple[int, Iterator[WorkItem]]]:
    """How many items the chunks hold, and the items themselves, read back lazily: each chunk goes to a
    temporary file as it comes, so a run knows its total (the progress bar's) without holding 10^6 items.
    Pickled, so an item comes back exactly as it was made."""
    with tempfile.TemporaryFile(prefix="personahub-pending-", dir=folder) as file:
        count = 0
        for chunk in chunks:
            pickle.dump(chunk, file, protocol=pickle.HIGHEST_PROTOCOL)
            count += len(chunk)
        file.seek(0)
        yield count, _unpickled(file)


def _unpickled(file: IO[bytes]) -> Iterator[WorkItem]:
    while True:
        try:
            chunk = pickle.load(file)
        except EOFError:
            return
        yield from chunk
