"""Embedding near-duplicate removal, the paper's second pass: cosine similarity 0.9 between persona
embeddings, among the personas MinHash kept.

Vectors come from the configured backend (the bundled model through llama.cpp by default) and are
kept in DuckDB; comparisons run inside coarse k-means buckets (the partitions of the sqlite-vec
index beside the store), each persona meeting the members of its nearest ``probes`` buckets, so
the cost grows as n^1.5 instead of n^2. docs/dedup.md measures what the buckets cost in recall.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from personahub_core.dedup import DedupOutline, cluster_roots, keep_earliest
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator
from personahub_core.vector_search import VectorIndex, embed_missing, index_path, kept_vectors, model_name, similar_pairs

METHOD = "embedding"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.9, gt=-1.0, le=1.0, description="cosine similarity at or above which a persona is a near-duplicate")
    probes: int = Field(2, ge=1, le=64, description="nearest buckets each persona is compared in")
    fresh: bool = Field(False, description="forget earlier embedding results and check every persona again")


class EmbeddingDeduplicator(DedupOutline, Deduplicator):
    name = METHOD
    description = "near-duplicate personas by embedding cosine similarity, compared within k-means buckets"
    Options = Options
    dedup_step = 3  # `personahub dedup`: last, on what MinHash kept (the paper's order)
    dedup_measure = "cosine"  # `personahub dedup --cosine` sets its threshold

    def compare(self, ctx, count, batches) -> None:
        o, store = self.options, ctx.store
        new = pa.Table.from_batches(list(batches))
        texts = new.column("persona").to_pylist()
        wordless = {pid for pid, t in zip(new.column("id").to_pylist(), texts) if not any(ch.isalnum() for ch in t)}
        new_ids = [pid for pid in new.column("id").to_pylist() if pid not in wordless]
        model = model_name(ctx.settings, ctx.backend)
        kept = store.select_personas(checked_by=METHOD, columns=("id",)).column("id")  # checked and kept earlier
        participants = pa.chunked_array(kept.chunks + new.column("id").chunks, pa.string())
        with ctx.progress("embedding", total=None) as progress:
            embed_missing(store, ctx.backend, model, ctx.note, progress, ids=participants)
        with VectorIndex(index_path(ctx.settings.db)) as index:
            centroids = index.sync(store, model)
            marks = self.pairs(ctx, model, kept, new_ids, centroids) if new_ids else []
            self.mark(ctx, new.column("id"), marks)
            index.sync(store, model)  # the newly marked leave the search index
        if wordless:
            ctx.note(f"embedding: {len(wordless)} personas have no words; not compared (the quality filter marks them)")
        ctx.note(f"embedding: checked {len(new_ids)} new personas; marked {len(marks)} near-duplicates "
                 f"at cosine >= {o.threshold}")

    def pairs(self, ctx, model: str, kept: pa.ChunkedArray, new_ids: list[str], centroids: np.ndarray) -> list[dict]:
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
        i, j, sim = similar_pairs(np.ascontiguousarray(vectors[order]), R, centroids, o.probes, o.threshold)
        duplicate_of, best = keep_earliest(len(order), i, j, sim)
        roots = cluster_roots(i, j)
        marks = []
        for k in np.flatnonzero(duplicate_of[R:] >= 0).tolist():
            partner = int(duplicate_of[R + k])
            marks.append({
                "persona_id": ordered_ids[R + k], "duplicate_of": ordered_ids[partner],
                "cluster_id": ordered_ids[roots.get(R + k, partner)], "similarity": round(float(best[R + k]), 6),
                "reason": f"cosine {best[R + k]:.3f} >= {o.threshold} ({model})",
            })
        return marks


@hookimpl
def register_tasks(register):
    register(EmbeddingDeduplicator)
