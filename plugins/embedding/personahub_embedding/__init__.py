"""Embedding near-duplicate removal, the paper's second pass: cosine similarity 0.9 between persona
embeddings, among the personas MinHash kept.

Vectors come from the configured backend (the bundled model through llama.cpp by default) and are
kept in DuckDB; comparisons run inside coarse k-means buckets (the partitions of the sqlite-vec
index beside the store), each persona meeting the members of its nearest ``probes`` buckets, so
the cost grows as n^1.5 instead of n^2. docs/dedup.md measures what the buckets cost in recall.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from personahub_core.dedup import KEPT, checked, cluster_roots, forget, keep_earliest, record, unchecked_personas
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator
from personahub_core.vector_search import VectorIndex, embed_missing, index_path, kept_vectors, model_name, similar_pairs

METHOD = "embedding"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.9, gt=-1.0, le=1.0, description="cosine similarity at or above which a persona is a near-duplicate")
    probes: int = Field(2, ge=1, le=64, description="nearest buckets each persona is compared in")
    fresh: bool = Field(False, description="forget earlier embedding results and check every persona again")


class EmbeddingDeduplicator(Deduplicator):
    name = METHOD
    description = "near-duplicate personas by embedding cosine similarity, compared within k-means buckets"
    Options = Options

    def run(self, ctx) -> None:
        o, store = self.options, ctx.store
        if o.fresh:
            forget(store, METHOD)
        total = store.count("personas")
        if total == 0:
            ctx.note("embedding: the store has no personas; nothing to deduplicate")
            return
        new = unchecked_personas(store, METHOD, ctx.where, ctx.limit)
        if new.num_rows == 0:
            ctx.note(f"embedding: all {total} personas are already checked or marked; nothing new")
            return
        texts = new.column("persona").to_pylist()
        wordless = {pid for pid, t in zip(new.column("id").to_pylist(), texts) if not any(ch.isalnum() for ch in t)}
        new_ids = [pid for pid in new.column("id").to_pylist() if pid not in wordless]
        model = model_name(ctx.settings, ctx.backend)
        store.con.register("_new", new.select(["id"]))
        try:
            with ctx.progress("embedding", total=None) as progress:
                participants = f"({checked(METHOD)} OR p.id IN (SELECT id FROM _new))"
                embed_missing(store, ctx.backend, model, ctx.note, progress, only=participants)
        finally:
            store.con.unregister("_new")
        with VectorIndex(index_path(ctx.settings.db)) as index:
            centroids = index.sync(store, model)
            marks = self.compare(ctx, model, new_ids, centroids) if new_ids else []
            record(store, METHOD, ctx.run_id, new.column("id").to_pylist(), marks)
            index.sync(store, model)  # the newly marked leave the search index
        ctx.stats.items_done += new.num_rows
        if wordless:
            ctx.note(f"embedding: {len(wordless)} personas have no words; not compared (the quality filter marks them)")
        ctx.note(f"embedding: checked {len(new_ids)} new personas; marked {len(marks)} near-duplicates "
                 f"at cosine >= {o.threshold}")

    def compare(self, ctx, model: str, new_ids: list[str], centroids: np.ndarray) -> list[dict]:
        """Numbering kept-first (already checked and kept), then new, both in creation order."""
        o = self.options
        _, ids, vectors = kept_vectors(ctx.store, model)
        refs = {r[0] for r in ctx.store.query(f"SELECT p.id FROM personas p WHERE {KEPT} AND {checked(METHOD)}")}
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
