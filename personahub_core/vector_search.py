"""Persona embeddings and their sqlite-vec index: embedding dedup and ``personahub personas search``.

Vectors live in DuckDB (table ``embeddings``: persona, model, float32 blob), the system of record.
The index beside the store (``<db>.vec.sqlite``) is derived and rebuildable: a vec0 table of the
kept personas' vectors partitioned by coarse bucket (spherical k-means centroids, stored with it),
so a query or a dedup pass looks at a few buckets instead of every persona.

    embed_missing()  ──>  embeddings (DuckDB)  ──>  VectorIndex.sync(): train buckets when missing or
    stale, add new kept personas, drop newly marked ones  ──>  search() / similar_pairs()
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from .errors import PersonaHubError
from .settings import Settings
from .store import MARKED, Store

KEPT = f"NOT {MARKED}"
EMBED_BATCH = 256  # texts per backend call
SINGLE_BUCKET_BELOW = 5000  # fewer vectors: one bucket, every comparison exact
RETRAIN_GROWTH = 4  # re-cluster when the index has grown this many times since training
SEARCH_EXACT_BELOW = 100_000  # search every bucket below this many vectors
QUERY_BLOCK = 4096  # query vectors per matrix product


class VectorIndexError(PersonaHubError):
    """The vector index cannot be opened or built."""


# -- embeddings in the store ------------------------------------------------------------------------
def embed_missing(store: Store, embedder, model: str, note: Callable[[str], None] | None = None,
                  progress=None, only: str = "TRUE", ids: pa.Array | None = None) -> int:
    """Embed every kept persona (matching the SQL condition ``only`` on ``p``, and among ``ids`` if
    given) that has no vector from ``model`` yet, with ``embedder`` (anything with ``embed(texts)``);
    returns how many."""
    among = "" if ids is None else "AND p.id IN (SELECT id FROM _embed_ids)"
    if ids is not None:
        store.con.register("_embed_ids", pa.table({"id": ids}))
    try:
        missing = store.con.sql(
            f"SELECT p.id, p.persona FROM personas p WHERE {KEPT} AND {only} {among} AND NOT EXISTS "
            f"(SELECT 1 FROM embeddings e WHERE e.persona_id = p.id AND e.model = ?) ORDER BY p.seq", params=[model]
        ).to_arrow_table()
    finally:
        if ids is not None:
            store.con.unregister("_embed_ids")
    if missing.num_rows == 0:
        return 0
    ids, texts = missing.column("id").to_pylist(), missing.column("persona").to_pylist()
    bar = progress.task_ids[0] if progress is not None else None
    if progress is not None:
        progress.update(bar, total=len(ids))
    for start in range(0, len(ids), EMBED_BATCH):
        batch = texts[start : start + EMBED_BATCH]
        # An empty text has no meaning to embed; a single space keeps the batch aligned.
        vectors = normalise(np.asarray(embedder.embed([t if t.strip() else " " for t in batch]), dtype=np.float32))
        write_embeddings(store, ids[start : start + len(batch)], model, vectors)
        if progress is not None:
            progress.update(bar, advance=len(batch))
    if note is not None:
        note(f"embedded {len(ids)} personas with {model}")
    return len(ids)


def write_embeddings(store: Store, ids: list[str], model: str, vectors: np.ndarray) -> None:
    dim = vectors.shape[1]
    blobs = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * dim), len(ids),
                                                 [None, pa.py_buffer(np.ascontiguousarray(vectors, "<f4").tobytes())])
    store.con.register("_embeddings", pa.table({"persona_id": pa.array(ids, pa.string()), "vector": blobs}))
    try:
        store.con.execute("INSERT INTO embeddings (persona_id, model, dim, vector) "
                          "SELECT persona_id, ?, ?, vector::BLOB FROM _embeddings", [model, dim])
    finally:
        store.con.unregister("_embeddings")


def kept_vectors(store: Store, model: str, seqs: np.ndarray | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(seq, id, vectors) of kept personas with a ``model`` vector (only ``seqs`` if given), in creation order."""
    only = "" if seqs is None else "AND p.seq IN (SELECT unnest(?))"
    params = [model] if seqs is None else [model, seqs.tolist()]
    table = store.con.sql(
        f"SELECT p.seq, p.id, e.dim, e.vector FROM personas p JOIN embeddings e ON e.persona_id = p.id "
        f"WHERE e.model = ? AND {KEPT} {only} ORDER BY p.seq", params=params
    ).to_arrow_table()
    if table.num_rows == 0:
        return np.zeros(0, np.int64), [], np.zeros((0, 0), np.float32)
    dims = set(table.column("dim").to_pylist())
    if len(dims) > 1:
        raise VectorIndexError(f"embeddings of {model} have several dimensions {sorted(dims)}; "
                               f"delete them with: DELETE FROM embeddings WHERE model = '{model}'")
    dim = dims.pop()
    blobs = table.column("vector").combine_chunks()
    offsets = np.frombuffer(blobs.buffers()[1], dtype=np.int64 if pa.types.is_large_binary(blobs.type) else np.int32)
    offsets = offsets[blobs.offset : blobs.offset + len(blobs) + 1]
    data = np.frombuffer(blobs.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    vectors = data.view("<f4").reshape(len(blobs), dim)
    return np.asarray(table.column("seq").to_numpy(), dtype=np.int64), table.column("id").to_pylist(), vectors


def kept_seqs(store: Store, model: str) -> np.ndarray:
    return store.con.sql(
        f"SELECT p.seq FROM personas p JOIN embeddings e ON e.persona_id = p.id WHERE e.model = ? AND {KEPT}",
        params=[model]).fetchnumpy()["seq"].astype(np.int64)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# -- buckets --------------------------------------------------------------------------------------
def bucket_count(n: int) -> int:
    """About sqrt(n) buckets of about sqrt(n) vectors: comparisons grow as n^1.5, not n^2."""
    return 1 if n < SINGLE_BUCKET_BELOW else int(round(math.sqrt(n)))


def train_buckets(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 8, sample: int = 65_536) -> np.ndarray:
    """Spherical k-means centroids (unit vectors) from a sample of the vectors."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    if k <= 1 or n <= k:
        mean = vectors.mean(axis=0, keepdims=True) if n else np.ones((1, vectors.shape[1]), np.float32)
        return normalise(mean if k <= 1 else vectors.copy())
    train = vectors[rng.choice(n, size=min(sample, n), replace=False)]
    centroids = train[rng.choice(len(train), size=k, replace=False)].copy()
    for _ in range(iterations):
        assign = nearest_buckets(train, centroids, 1)[:, 0]
        # Per-bucket sums as one matrix product with the assignment matrix (faster than add.at).
        sums = (assign[None, :] == np.arange(k)[:, None]).astype(np.float32) @ train
        empty = np.bincount(assign, minlength=k) == 0
        sums[empty] = train[rng.choice(len(train), size=int(empty.sum()))]  # re-seed empty buckets
        centroids = normalise(sums)
    return centroids


def nearest_buckets(vectors: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """For each vector, its ``probes`` most similar centroids, most similar first."""
    probes = min(probes, len(centroids))
    out = np.empty((len(vectors), probes), dtype=np.int64)
    for start in range(0, len(vectors), QUERY_BLOCK):
        sims = vectors[start : start + QUERY_BLOCK] @ centroids.T
        if probes == 1:
            out[start : start + QUERY_BLOCK, 0] = sims.argmax(axis=1)
            continue
        if probes < len(centroids):
            top = np.argpartition(-sims, probes - 1, axis=1)[:, :probes]
        else:
            top = np.broadcast_to(np.arange(len(centroids)), sims.shape).copy()
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[start : start + QUERY_BLOCK] = np.take_along_axis(top, order, axis=1)
    return out


def similar_pairs(vectors: np.ndarray, first_new: int, centroids: np.ndarray, probes: int,
                  threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j, j >= first_new) with cosine >= threshold, compared exactly within buckets: each
    new vector meets every vector whose nearest centroid is among its own ``probes`` nearest.
    A pair whose two vectors fall in buckets neither probes is missed: the recall cost of bucketing."""
    n = len(vectors)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n == 0 or first_new >= n:
        return empty
    home = nearest_buckets(vectors, centroids, 1)[:, 0]
    new = np.arange(first_new, n)
    probe = nearest_buckets(vectors[first_new:], centroids, probes)
    # Group the (query, bucket) probes and the bucket members by bucket.
    q_bucket, q_index = probe.ravel(), np.repeat(new, probe.shape[1])
    q_order = np.argsort(q_bucket, kind="stable")
    q_bucket, q_index = q_bucket[q_order], q_index[q_order]
    m_order = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[m_order], np.arange(len(centroids) + 1))
    q_bounds = np.searchsorted(q_bucket, np.arange(len(centroids) + 1))
    found = []
    for c in range(len(centroids)):
        members = m_order[m_bounds[c] : m_bounds[c + 1]]
        queries = q_index[q_bounds[c] : q_bounds[c + 1]]
        if len(members) == 0 or len(queries) == 0:
            continue
        block = max(1, (1 << 24) // max(len(members), 1))  # ~64 MB of similarities at a time
        for start in range(0, len(queries), block):
            q = queries[start : start + block]
            sims = vectors[q] @ vectors[members].T
            qi, mi = np.nonzero(sims >= threshold)
            a, b = q[qi], members[mi]
            keep = a != b
            found.append((np.minimum(a, b)[keep], np.maximum(a, b)[keep], sims[qi, mi][keep]))
    if not found:
        return empty
    i = np.concatenate([f[0] for f in found])
    j = np.concatenate([f[1] for f in found])
    s = np.concatenate([f[2] for f in found])
    _, unique = np.unique(i * n + j, return_index=True)
    return i[unique], j[unique], s[unique]


# -- the sqlite-vec index -------------------------------------------------------------------------
def index_path(db: Path) -> Path:
    return Path(str(db) + ".vec.sqlite")


class VectorIndex:
    """The kept personas' vectors of one model in a vec0 table partitioned by bucket."""

    def __init__(self, path: Path):
        import apsw
        import sqlite_vec

        self.path = path
        try:
            self.con = apsw.Connection(str(path))
            self.con.enable_load_extension(True)
            sqlite_vec.load(self.con)
            self.con.enable_load_extension(False)
            self.con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        except apsw.Error as exc:
            raise VectorIndexError(f"vector index {path}: {exc}; delete it to rebuild") from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def centroids(self) -> np.ndarray:
        rows = self.con.execute("SELECT vector FROM centroids ORDER BY bucket").fetchall()
        return np.stack([np.frombuffer(r[0], dtype="<f4") for r in rows])

    def sync(self, store: Store, model: str) -> np.ndarray:
        """Bring the index in line with the kept personas' ``model`` vectors (re-clustering when it
        is missing, of another model, or has outgrown its buckets); returns the centroids."""
        seqs = kept_seqs(store, model)
        if len(seqs) == 0:
            return np.zeros((0, 0), np.float32)
        trained_on = int(self.meta("trained_on") or 0)
        if (self.meta("model") != model or not self.meta("dim")
                or len(seqs) > RETRAIN_GROWTH * max(trained_on, SINGLE_BUCKET_BELOW // RETRAIN_GROWTH)):
            self.rebuild(model, kept_vectors(store, model)[2])
        centroids = self.centroids()
        present = np.array([r[0] for r in self.con.execute("SELECT rowid FROM personas_vec")], dtype=np.int64)
        gone = np.setdiff1d(present, seqs)  # marked since, or their vectors were removed
        add = np.setdiff1d(seqs, present)
        with self.con:
            self.con.executemany("DELETE FROM personas_vec WHERE rowid = ?", ((int(r),) for r in gone))
            if len(add):
                seq, ids, vectors = kept_vectors(store, model, add)
                if vectors.shape[1] != centroids.shape[1]:
                    raise VectorIndexError(f"{model} vectors changed dimension; delete {self.path} to rebuild")
                home = nearest_buckets(vectors, centroids, 1)[:, 0]
                self.con.executemany(
                    "INSERT INTO personas_vec (rowid, embedding, bucket, persona_id) VALUES (?, ?, ?, ?)",
                    ((int(q), v.tobytes(), int(b), pid) for q, v, b, pid in zip(seq.tolist(), vectors, home.tolist(), ids)),
                )
        return centroids

    def rebuild(self, model: str, vectors: np.ndarray) -> None:
        dim = vectors.shape[1]
        centroids = train_buckets(vectors, bucket_count(len(vectors)))
        with self.con:
            self.con.execute("DROP TABLE IF EXISTS personas_vec; DROP TABLE IF EXISTS centroids; DELETE FROM meta;")
            self.con.execute(f"CREATE VIRTUAL TABLE personas_vec USING vec0(embedding float[{int(dim)}] "
                             f"distance_metric=cosine, bucket integer partition key, +persona_id text)")
            self.con.execute("CREATE TABLE centroids (bucket INTEGER PRIMARY KEY, vector BLOB)")
            self.con.executemany("INSERT INTO centroids VALUES (?, ?)", ((b, c.tobytes()) for b, c in enumerate(centroids)))
            self.con.executemany("INSERT INTO meta VALUES (?, ?)",
                                 [("model", model), ("dim", str(dim)), ("trained_on", str(len(vectors)))])

    def search(self, query: np.ndarray, k: int, probes: int | None = None) -> list[tuple[str, float]]:
        """The k nearest kept personas by cosine: (persona id, similarity), most similar first."""
        centroids = self.centroids()
        total = self.con.execute("SELECT count(*) FROM personas_vec").fetchone()[0]
        if probes is None:
            probes = len(centroids) if total < SEARCH_EXACT_BELOW else max(8, len(centroids) // 10)
        hits: list[tuple[str, float]] = []
        blob = np.asarray(query, dtype="<f4").tobytes()
        for bucket in nearest_buckets(query[None, :], centroids, probes)[0].tolist():
            hits += [(pid, 1.0 - dist) for pid, dist in self.con.execute(
                "SELECT persona_id, distance FROM personas_vec WHERE embedding MATCH ? AND k = ? AND bucket = ?",
                (blob, k, bucket))]
        return sorted(hits, key=lambda h: -h[1])[:k]


def search_personas(store: Store, settings: Settings, backend_class: type, text: str, k: int) -> list[dict]:
    """The kept personas most similar to ``text``: dicts of id, persona and cosine similarity, embedded by
    the embedding model the settings name (the same one embedding dedup uses; a served one through the
    backend class the command resolved)."""
    from .embedders import open_embedder
    from .errors import UsageError

    if not text.strip():
        raise UsageError("personas search: the search text is empty")
    if k < 1:
        raise UsageError("personas search: --k must be 1 or more")
    embedder = open_embedder(settings, backend_class)
    try:
        model = embedder.name
        embed_missing(store, embedder, model)
        query = normalise(np.asarray(embedder.embed([text]), dtype=np.float32))[0]
    finally:
        embedder.close()
    with VectorIndex(index_path(settings.db)) as index:
        if len(index.sync(store, model)) == 0:
            return []
        hits = index.search(query, k)
    if not hits:
        return []
    texts = dict(store.query("SELECT id, persona FROM personas WHERE id IN (SELECT unnest(?))", [[h[0] for h in hits]]))
    return [{"id": pid, "persona": texts[pid], "similarity": round(float(sim), 4)} for pid, sim in hits]

