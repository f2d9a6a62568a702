"""Embedding near-duplicate removal, the paper's second pass: cosine similarity between persona
embeddings, among the personas MinHash kept.

Vectors come from a sentence-embedding model (``personahub_core.embedders``: the shipped
all-MiniLM-L6-v2 by default, or ``--embedding-model``) and are kept in DuckDB. The threshold is the
model's own, chosen on the shipped calibration set (``personahub_core.calibration``): the shipped
model's is in a table, any other model is calibrated the first time and the result kept in the store
(``embedding_calibrations``). A model whose vectors do not separate near-duplicates from distinct
personas there marks nothing unless the user names a threshold. Comparisons run inside coarse k-means
buckets (the partitions of the sqlite-vec index beside the store), each persona meeting the members
of its nearest ``probes`` buckets, so the cost grows as n^1.5 instead of n^2. docs/dedup.md measures
what the buckets cost in recall.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from personahub_core.calibration import SHIPPED, Calibration, calibrate, load_pairs
from personahub_core.dedup import DedupOutline, cluster_roots, keep_earliest
from personahub_core.embedders import SHIPPED_MODEL, open_embedder
from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator
from personahub_core.vector_search import VectorIndex, embed_missing, index_path, kept_vectors, similar_pairs

METHOD = "embedding"
CALIBRATION_COLUMNS = tuple(Calibration.__dataclass_fields__)
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS embedding_calibrations (
        model VARCHAR NOT NULL,           -- the embedder's name, as stored vectors record it
        pairs_digest VARCHAR NOT NULL,    -- sha256 of the calibration set it was chosen on
        threshold DOUBLE, auc DOUBLE, near_median DOUBLE, distinct_median DOUBLE, recall DOUBLE,
        false_rate DOUBLE, near_pairs INTEGER, distinct_pairs INTEGER,
        calibrated_at TIMESTAMP DEFAULT current_timestamp
    );
    """
]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float | None = Field(
        None, gt=-1.0, le=1.0,
        description=f"cosine similarity at or above which a persona is a near-duplicate (default: the embedding "
                    f"model's calibrated threshold, {SHIPPED[SHIPPED_MODEL].threshold} for {SHIPPED_MODEL})")
    probes: int = Field(2, ge=1, le=64, description="nearest buckets each persona is compared in")
    fresh: bool = Field(False, description="forget earlier embedding results and check every persona again")


class EmbeddingDeduplicator(DedupOutline, Deduplicator):
    name = METHOD
    description = "near-duplicate personas by embedding cosine similarity, compared within k-means buckets"
    Options = Options
    dedup_step = 3  # `personahub dedup`: last, on what MinHash kept (the paper's order)
    dedup_measure = "cosine"  # `personahub dedup --embedding-threshold` (or --cosine) sets its threshold

    def compare(self, ctx, count, batches) -> None:
        store = ctx.store
        new = pa.Table.from_batches(list(batches))
        texts = new.column("persona").to_pylist()
        wordless = {pid for pid, t in zip(new.column("id").to_pylist(), texts) if not any(ch.isalnum() for ch in t)}
        new_ids = [pid for pid in new.column("id").to_pylist() if pid not in wordless]
        embedder = open_embedder(ctx.settings, ctx.backend_class)
        try:
            model = embedder.name
            threshold, source = self.threshold(ctx, embedder)
            kept = store.select_personas(checked_by=METHOD, columns=("id",)).column("id")  # checked and kept earlier
            participants = pa.chunked_array(kept.chunks + new.column("id").chunks, pa.string())
            with ctx.progress("embedding", total=None) as progress:
                embed_missing(store, embedder, model, ctx.note, progress, ids=participants)
        finally:
            embedder.close()
        with VectorIndex(index_path(ctx.settings.db)) as index:
            centroids = index.sync(store, model)
            marks = self.pairs(ctx, model, kept, new_ids, centroids, threshold, source) if new_ids else []
            self.mark(ctx, new.column("id"), marks)
            index.sync(store, model)  # the newly marked leave the search index
        if wordless:
            ctx.note(f"embedding: {len(wordless)} personas have no words; not compared (the quality filter marks them)")
        ctx.note(f"embedding: checked {len(new_ids)} new personas; marked {len(marks)} near-duplicates "
                 f"at cosine >= {threshold} ({source} for {model})")

    def threshold(self, ctx, embedder) -> tuple[float, str]:
        """The threshold to mark at and where it came from (given, or the model's calibrated one), recorded
        with the run's options. A model that separates the calibration set poorly marks only at a given one.
        A given threshold needs no calibration (a slow model is not made to embed the set), but one known
        is still checked."""
        given = self.options.threshold
        calibration = known_calibration(ctx, embedder) if given is not None else calibration_for(ctx, embedder)
        if calibration is not None and calibration.poorly_separated:
            warning = f"embedding: vectors poorly separated: {calibration.summary()}"
            if given is None:
                raise UsageError(f"{warning}; not marking with them: use another --embedding-model, "
                                 f"or give --embedding-threshold to mark anyway")
            ctx.note(warning)
        threshold, source = (given, "given") if given is not None else (calibration.threshold, "calibrated")
        ctx.store.amend_run_options(ctx.run_id, {"threshold": threshold, "threshold_source": source,
                                                 "embedding_model": embedder.name})
        return threshold, source

    def pairs(self, ctx, model: str, kept: pa.ChunkedArray, new_ids: list[str], centroids: np.ndarray,
              threshold: float, source: str) -> list[dict]:
        """Numbering kept-first (already checked and kept), then new, both in creation order."""
        o = self.options
        _, ids, vectors = kept_vectors(ctx.store, model)
        refs = set(kept.to_pylist())
        position = {pid: k for k, pid in enumerate(ids)}
        new_set = set(new_ids)
        order = [position[pid] for pid in ids if pid in refs] + [position[pid] for pid in new_ids if pid in position]
        ordered_ids = [ids[k] for k in order]
        R = len(order) - sum(1 for pid in new_ids if pid in position)
        missing = new_set - position.keys()
        if missing:
            ctx.note(f"embedding: {len(missing)} personas have no {model} vector; not compared")
        i, j, sim = similar_pairs(np.ascontiguousarray(vectors[order]), R, centroids, o.probes, threshold)
        duplicate_of, best = keep_earliest(len(order), i, j, sim)
        roots = cluster_roots(i, j)
        marks = []
        for k in np.flatnonzero(duplicate_of[R:] >= 0).tolist():
            partner = int(duplicate_of[R + k])
            marks.append({
                "persona_id": ordered_ids[R + k], "duplicate_of": ordered_ids[partner],
                "cluster_id": ordered_ids[roots.get(R + k, partner)], "similarity": round(float(best[R + k]), 6),
                "reason": f"cosine {best[R + k]:.3f} >= {threshold} ({source} for {model})",
            })
        return marks


def known_calibration(ctx, embedder) -> Calibration | None:
    """The shipped model's calibration from its table, any other's from the store (for this calibration
    set: a changed set is calibrated again), or None."""
    if embedder.name in SHIPPED:
        return SHIPPED[embedder.name]
    stored = ctx.store.read("embedding_calibrations", CALIBRATION_COLUMNS, where="t.model = ? AND t.pairs_digest = ?",
                            params=[embedder.name, pairs_digest(load_pairs())]).to_pylist()
    return Calibration(**stored[-1]) if stored else None


def pairs_digest(pairs: list[dict]) -> str:
    return hashlib.sha256(json.dumps(pairs, sort_keys=True).encode()).hexdigest()


def calibration_for(ctx, embedder) -> Calibration:
    """The model's calibration, made on the calibration set the first time and kept in the store."""
    known = known_calibration(ctx, embedder)
    if known is not None:
        return known
    pairs = load_pairs()
    ctx.note(f"embedding: calibrating {embedder.name} on the shipped calibration set ({len(pairs)} pairs), once")
    calibration = calibrate(embedder, pairs)
    row = {k: [v] for k, v in calibration.as_dict().items()}
    ctx.store.append("embedding_calibrations", pa.table(row), {"pairs_digest": pairs_digest(pairs)})
    return calibration


@hookimpl
def register_tasks(register):
    register(EmbeddingDeduplicator)


@hookimpl
def register_migrations(register):
    register("embedding", MIGRATIONS)
