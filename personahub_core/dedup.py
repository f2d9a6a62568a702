"""What every deduplicator shares: the outline of a run (select, compare, mark) and the keep-earliest rule.

A deduplicator never deletes. It records each persona it checked (so the next run looks only at new
personas) and each persona it drops with its kept partner, through the store's ``mark_personas``.
A persona marked by any method is out of every later comparison: it is neither checked again nor
a partner that something else can be a duplicate of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from .tasks import Context


class DedupOutline:
    """The steps every deduplicator takes, so a plugin states only how it compares.

    ``run``: under ``--fresh``, forget the method's earlier marks and checks (and, through
    ``forget_own``, what the plugin keeps of its own); ``prepare``; select the kept personas this
    method has not checked yet (``--where``, ``--limit``), in creation order, streamed in Arrow
    batches of ``batch_rows``; hand them to ``compare``, which records what it checked and marks
    through ``mark``. Mixed in before the core's base: ``class MyDedup(DedupOutline, Deduplicator)``;
    the method's name in the store is the task's ``name``.
    """

    batch_rows: ClassVar[int] = 50_000

    def run(self, ctx: "Context") -> None:
        store = ctx.store
        if getattr(self.options, "fresh", False):
            store.forget_method(self.name)
            self.forget_own(ctx)
        self.prepare(ctx)
        total = store.persona_count()
        if total == 0:
            ctx.note(f"{self.name}: the store has no personas; nothing to check")
            return
        count, batches = store.stream_personas(unchecked_by=self.name, where=ctx.where, limit=ctx.limit,
                                               batch_rows=self.batch_rows)
        if count == 0:
            ctx.note(f"{self.name}: all {total} personas are already checked or marked; nothing new")
            return
        self.compare(ctx, count, batches)

    def forget_own(self, ctx: "Context") -> None:
        """Under ``--fresh``: drop what the plugin keeps of its own (signatures, say). Default: nothing."""

    def prepare(self, ctx: "Context") -> None:
        """Before selecting: tidy what an interrupted run left in the plugin's tables. Default: nothing."""

    def compare(self, ctx: "Context", count: int, batches: Iterator["pa.RecordBatch"]) -> None:
        """Check the ``count`` new personas (columns seq, id, persona) and ``mark`` them."""
        raise NotImplementedError

    def mark(self, ctx: "Context", checked_ids: Sequence[str] | "pa.Array", marks: list[dict] | "pa.Table" = ()) -> None:
        """Record the personas checked and mark the dropped ones (persona_id, duplicate_of, cluster_id,
        similarity, reason), in one transaction; they count as the run's items done."""
        ctx.store.mark_personas(self.name, ctx.run_id, checked_ids, marks)
        ctx.stats.items_done += len(checked_ids)


def keep_earliest(n: int, i: np.ndarray, j: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keep-earliest rule over pairs (i < j) already known to be at or above the threshold.

    Documents are numbered in the order they count as "earlier" (already kept ones first, then new
    ones by creation). Going through them in that order, a document is dropped only if it matches
    one that is itself kept; it points to its most similar kept partner (ties: the earliest). So a
    dropped document always has a kept partner at or above the threshold, even where pairs chain
    (A~B and B~C with A, C apart: A kept, B dropped for A, C kept unless it matches A itself).

    Returns duplicate_of (-1 where kept) and the similarity to that partner."""
    best = np.zeros(n, dtype=np.float64)
    dup = [-1] * n
    order = np.lexsort((i, -sim, j))  # by later document, then most similar, then earliest
    for a, b, s in zip(i[order].tolist(), j[order].tolist(), sim[order].tolist()):
        if dup[b] == -1 and dup[a] == -1:  # a < b, so a's fate is settled by now
            dup[b] = a
            best[b] = s
    return np.array(dup, dtype=np.int64), best


def cluster_roots(i: np.ndarray, j: np.ndarray) -> dict[int, int]:
    """Connected components of the pairs (union-find): each paired document -> its earliest member."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent.get(x, x)
        return root

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in set(i.tolist()) | set(j.tolist())}


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """[0..c0), [0..c1), ... concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
