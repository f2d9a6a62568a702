"""Which work items still need doing: keys checked against the store a chunk at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

from .tasks import WorkItem

if TYPE_CHECKING:
    from .runner import TaskContext

CHECK_CHUNK = 5000


def pending_chunks(ctx: TaskContext, items: Iterable[WorkItem]) -> Iterator[list[WorkItem]]:
    """The items not yet stored, up to --limit, a chunk at a time: one query per chunk answers which
    keys are stored, and nothing here holds more than a chunk, so a run over 10^6 items can stream."""
    wanted = ctx.limit
    chunk: list[WorkItem] = []

    def check() -> list[WorkItem]:
        keys = [i.key for i in chunk]
        done = ctx.store.existing_keys(keys, retry_failed=ctx.retry_failed)
        earlier = ctx.store.failed_attempts(keys)
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


def pending_items(ctx: TaskContext, items: Iterable[WorkItem]) -> list[WorkItem]:
    """All the items not yet stored, up to --limit (the local runner's progress bar wants a total)."""
    return [item for chunk in pending_chunks(ctx, items) for item in chunk]
