"""MinHash dedup on Ray, for corpora larger than one machine. The engine's signatures, band keys and
exact Jaccard, and the core's keep-earliest rule, so it finds what the single-machine run finds;
only the meeting of personas that share a band bucket moves from one process's sort to a shuffle.

    rows {id, order, text} ──map_batches──> band keys per persona (engine: Vocabulary, MinHasher, band_keys)
      ──> one row per (persona, band), tagged shard = hash(band, key) % shards
      ──groupby(shard).map_groups──> in each shard, personas sharing a (band, key) bucket are candidates;
          a pair is checked only in the first band it shares, so exactly once, by the engine's exact
          Jaccard; pairs at or above the threshold leave the shard
      ──> verified pairs to the driver ──> keep_earliest and cluster_roots (personahub_core.dedup)

A shard holds many buckets, so the per-group Python call is paid per shard, not per bucket, and the
bucket grouping inside a shard is the engine's vectorised one (sort, run starts, ragged ranges).
``order`` is the keep-earliest order: kept personas first, then new ones by creation.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from personahub_core.dedup import cluster_roots, keep_earliest, ragged_arange

from .engine import MinHasher, Vocabulary, band_keys, jaccard

# (persona, band) rows per shard: enough that a shard's fixed cost is small, few enough that a
# shard with its texts fits easily in one worker's memory.
ROWS_PER_SHARD = 200_000
ROWS_PER_BLOCK = 50_000  # personas signed per task
_MIX = np.uint64(0x9E3779B97F4A7C15)


def band_rows(batch: dict[str, np.ndarray], options, shards: int) -> dict[str, np.ndarray]:
    """Each persona with words becomes one row per band, tagged with the shard of its bucket."""
    texts = [str(t) for t in batch["text"]]
    vocab = Vocabulary(options.ngram)
    docs = vocab.tokenise(texts)
    has_words = docs.lengths > 0  # a persona without words matches nothing (the quality filter marks it)
    keys = band_keys(MinHasher(options.num_perm).signatures(docs, vocab.hashes)[has_words], options.bands, options.rows)
    n, bands = len(keys), options.bands
    band = np.tile(np.arange(bands, dtype=np.int64), n)
    key = keys.reshape(-1)
    with np.errstate(over="ignore"):
        shard = ((key ^ (band.astype(np.uint64) * _MIX)) % np.uint64(shards)).astype(np.int64)
    return {
        "shard": shard,
        "band": band,
        "key": key,
        "keys": np.repeat(keys, bands, axis=0),  # all the persona's keys, for the "first shared band" test
        "order": np.repeat(np.asarray(batch["order"], dtype=np.int64)[has_words], bands),
        "id": np.repeat(np.asarray(batch["id"], dtype=object)[has_words], bands),
        "text": np.repeat(np.asarray(texts, dtype=object)[has_words], bands),
    }


def verified_pairs(shard: dict[str, np.ndarray], options, settled_below: int) -> dict[str, np.ndarray]:
    """Pairs in this shard's buckets, each from the first band the two share, whose later member is
    new (order >= settled_below), kept where the exact Jaccard is at or above the threshold."""
    band, key, order = shard["band"], shard["key"], shard["order"]
    idx = np.lexsort((order, key, band))  # buckets in runs, personas in keep order inside each
    b, k = band[idx], key[idx]
    starts = np.ones(len(idx), dtype=bool)
    starts[1:] = (b[1:] != b[:-1]) | (k[1:] != k[:-1])
    positions = np.arange(len(idx), dtype=np.int64)
    run_start = np.maximum.accumulate(np.where(starts, positions, 0))
    earlier = np.where(order[idx] >= settled_below, positions - run_start, 0)
    later = np.repeat(positions, earlier)
    first, second = idx[run_start[later] + ragged_arange(earlier[earlier > 0])], idx[later]
    keys = shard["keys"]
    once = np.argmax(keys[first] == keys[second], axis=1) == band[first]
    first, second = first[once], second[once]

    # Exact Jaccard on the word sets of the personas these pairs touch, each tokenised once.
    both = np.concatenate([first, second])
    at, where = np.unique(order[both], return_index=True)
    docs = Vocabulary(options.ngram).tokenise([str(t) for t in shard["text"][both[where]]])
    sim = jaccard(docs, np.searchsorted(at, order[first]), np.searchsorted(at, order[second]))
    hit = sim >= options.threshold
    return {
        "a_order": order[first][hit], "a_id": np.asarray(shard["id"][first][hit], dtype=object),
        "b_order": order[second][hit], "b_id": np.asarray(shard["id"][second][hit], dtype=object),
        "similarity": sim[hit],
    }


def find_duplicates(dataset, options, rows: int, settled_below: int = 0) -> list[dict]:
    """Near-duplicates in a Ray Dataset of {id, order, text} (``rows`` of them), as dedup marks:
    persona_id, duplicate_of, cluster_id, similarity, reason. Personas with order < settled_below are
    already settled against each other (kept ones): only pairs with a newer persona are checked."""
    shards = max(1, math.ceil(rows * options.bands / ROWS_PER_SHARD))
    pairs = (
        dataset.map_batches(band_rows, fn_kwargs={"options": options, "shards": shards}, batch_format="numpy")
        .groupby("shard", num_partitions=shards)
        .map_groups(verified_pairs, fn_kwargs={"options": options, "settled_below": settled_below},
                    batch_format="numpy")
    )
    found: dict[str, list[np.ndarray]] = {"a_order": [], "a_id": [], "b_order": [], "b_id": [], "similarity": []}
    for batch in pairs.iter_batches(batch_format="numpy", batch_size=None):
        for name, values in found.items():
            values.append(np.asarray(batch[name]))
    if not sum(len(a) for a in found["a_order"]):
        return []
    a_order, b_order, sim = (np.concatenate(found[n]) for n in ("a_order", "b_order", "similarity"))
    ids = dict(zip(a_order.tolist(), np.concatenate(found["a_id"]).tolist()))
    ids.update(zip(b_order.tolist(), np.concatenate(found["b_id"]).tolist()))

    # The core's rules over the verified pairs, personas renumbered densely in keep order.
    orders = np.unique(np.concatenate([a_order, b_order]))
    i, j = np.searchsorted(orders, a_order), np.searchsorted(orders, b_order)
    duplicate_of, best = keep_earliest(len(orders), i, j, sim)
    roots = cluster_roots(i, j)
    pid = [ids[o] for o in orders.tolist()]
    return [
        {"persona_id": pid[d], "duplicate_of": pid[int(duplicate_of[d])], "cluster_id": pid[roots[d]],
         "similarity": round(float(best[d]), 6),
         "reason": f"word {options.ngram}-gram Jaccard {best[d]:.3f} >= {options.threshold}"}
        for d in np.flatnonzero(duplicate_of >= 0).tolist()
    ]


def compare_on_ray(task, ctx, batches) -> None:
    """The minhash task's comparison under ``--executor ray``: the local run's selection (new personas
    against the kept ones) and marks, with the bucket comparison on Ray. Signatures are not stored: a
    later local run re-hashes the kept personas it finds unsigned."""
    from personahub_core.ray_executor import RayExecutor, ensure_ray

    from . import METHOD

    ray = ensure_ray(RayExecutor.options_from(ctx.settings).ray_address)
    new = pa.Table.from_batches(list(batches))
    kept = ctx.store.select_personas(checked_by=METHOD)
    table = pa.concat_tables([kept, new])
    table = pa.table({"id": table.column("id"), "order": pa.array(np.arange(table.num_rows)),
                      "text": table.column("persona")})
    blocks = [table.slice(start, ROWS_PER_BLOCK) for start in range(0, table.num_rows, ROWS_PER_BLOCK)]
    marks = find_duplicates(ray.data.from_arrow(blocks), task.options, table.num_rows, settled_below=kept.num_rows)
    task.mark(ctx, new.column("id"), marks)
    ctx.note(f"minhash on ray: checked {new.num_rows} new personas against {kept.num_rows} kept ones; "
             f"marked {len(marks)} near-duplicates")
