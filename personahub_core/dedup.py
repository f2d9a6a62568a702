"""What every deduplicator shares: which personas to check, the keep-earliest rule, and writing marks.

A deduplicator never deletes. It records each persona it checked in ``dedup_checked`` (so the next
run looks only at new personas) and each persona it drops in ``dedup_marks`` with its kept partner.
A persona marked by any method is out of every later comparison: it is neither checked again nor
a partner that something else can be a duplicate of.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from .selection import parse_where
from .store import Store

KEPT = "NOT EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"


def checked(method: str) -> str:
    """SQL: persona p was checked by ``method`` (the name is ours, never user text)."""
    return f"EXISTS (SELECT 1 FROM dedup_checked c WHERE c.persona_id = p.id AND c.method = '{method}')"


def unchecked_sql(method: str, where: list[str] | None = None, limit: int | None = None) -> tuple[str, list]:
    """SQL and parameters: kept personas ``method`` has not checked yet, in creation order (seq, id, persona)."""
    clause, params = parse_where(where or [])
    sql = (f"SELECT p.seq, p.id, p.persona FROM personas p WHERE {KEPT} AND NOT {checked(method)} AND {clause} "
           f"ORDER BY p.seq")
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, list(params)


def unchecked_personas(store: Store, method: str, where: list[str] | None = None, limit: int | None = None) -> pa.Table:
    """Kept personas ``method`` has not checked yet, in creation order: columns seq, id, persona."""
    sql, params = unchecked_sql(method, where, limit)
    return store.con.sql(sql, params=params or None).to_arrow_table()


def stream_unchecked(store: Store, method: str, where: list[str] | None = None, limit: int | None = None,
                     batch_rows: int = 50_000) -> tuple[int, Iterator[pa.RecordBatch]]:
    """How many personas ``method`` has not checked yet, and those personas in batches (as in
    ``unchecked_personas``), read through a second connection so the store's own stays free for
    writes meanwhile: a million texts are never held at once."""
    sql, params = unchecked_sql(method, where, limit)
    count = store.scalar(f"SELECT count(*) FROM ({sql})", params)

    def batches() -> Iterator[pa.RecordBatch]:
        cursor = store.con.cursor()
        try:
            yield from cursor.sql(sql, params=params or None).to_arrow_reader(batch_rows)
        finally:
            cursor.close()

    return count, batches()


def forget(store: Store, method: str) -> None:
    """Drop a method's marks and checks, so its next run looks at every persona again."""
    with store.transaction():
        store.con.execute("DELETE FROM dedup_marks WHERE method = ?", [method])
        store.con.execute("DELETE FROM dedup_checked WHERE method = ?", [method])


def record(store: Store, method: str, run_id: str, checked_ids: Sequence[str] | pa.Array,
           marks: list[dict] | pa.Table) -> None:
    """Write, in one transaction, the personas checked and the marks (persona_id, duplicate_of,
    cluster_id, similarity, reason) of those dropped. Arrow input is written as it is, without a
    Python object per row (a million-persona run)."""
    ids = checked_ids if isinstance(checked_ids, pa.Array) else pa.array(list(checked_ids), pa.string())
    checked_table = pa.table({"persona_id": ids})
    if not isinstance(marks, pa.Table):
        columns = ("persona_id", "cluster_id", "duplicate_of", "similarity", "reason")
        types = (pa.string(), pa.string(), pa.string(), pa.float64(), pa.string())
        marks = pa.table({c: pa.array([m.get(c) for m in marks], t) for c, t in zip(columns, types)})
    con = store.con
    con.register("_checked", checked_table)
    con.register("_marks", marks)
    try:
        with store.transaction():
            con.execute("INSERT INTO dedup_checked SELECT persona_id, ?, ? FROM _checked", [method, run_id])
            con.execute(
                "INSERT OR IGNORE INTO dedup_marks (persona_id, method, cluster_id, duplicate_of, similarity, reason, "
                "run_id) SELECT persona_id, ?, cluster_id, duplicate_of, similarity, reason, ? FROM _marks",
                [method, run_id],
            )
    finally:
        con.unregister("_checked")
        con.unregister("_marks")


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
