"""Which work items still need doing: keys checked against the store a chunk at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from .tasks import WorkItem

if TYPE_CHECKING:
    from .runner import TaskContext

CHECK_CHUNK = 5000


def pending_items(ctx: TaskContext, items: Iterable[WorkItem]) -> list[WorkItem]:
    """The items not yet stored, up to --limit, checking keys against the store in chunks."""
    todo: list[WorkItem] = []
    chunk: list[WorkItem] = []

    def check() -> None:
        keys = [i.key for i in chunk]
        done = ctx.store.existing_keys(keys, retry_failed=ctx.retry_failed)
        earlier = ctx.store.failed_attempts(keys) if ctx.retry_failed else {}
        ctx.stats.items_skipped += len(done)
        for item in chunk:
            if item.key not in done:
                item.earlier_runs = earlier.get(item.key, 0)
                todo.append(item)
        chunk.clear()

    for item in items:
        chunk.append(item)
        if len(chunk) >= CHECK_CHUNK:
            check()
            if ctx.limit is not None and len(todo) >= ctx.limit:
                break
    check()
    return todo[: ctx.limit] if ctx.limit is not None else todo
