"""MinHash near-duplicate removal, as in the paper: word 1-grams, 128 permutations, Jaccard 0.9.

LSH with 21 bands of 6 rows (a pair at Jaccard 0.9 fails to become a candidate with probability
1.2e-7; the usual few-band settings for 0.9 miss 17-30% of duplicates), then, for every candidate
pair, two exact bounds (set sizes, word bitmaps) and the exact Jaccard of the word sets (personas
share template words, so signature matches alone would drop far too much), then keep-earliest.
Candidates are made and checked in bounded slices, so memory does not grow with their number.
Pairs whose smaller set is short (17 words at 0.9) can only be equal or one word apart: those are
found exactly by their one-word edits instead (``engine.one_word_edit_pairs``), so short personas
from a small vocabulary, where nearly every pair shares a band key, cost their length, not a pair
with every other.
Signatures are stored, so a later run hashes only new personas and compares them with the kept
ones. See docs/dedup.md for the arithmetic and the measurements.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personahub_core.dedup import DedupOutline, cluster_roots, keep_earliest
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator

from .engine import (BITMAP_WORDS, MinHasher, TokenSets, Vocabulary, band_keys, jaccard, kept_sharing_a_key,
                     near_duplicate_pairs, one_word_edit_pairs, one_word_reach, set_hashes, word_bitmaps)

NO_WORDS = np.iinfo(np.uint32).max  # the signature of a persona without words is all of these
CHUNK = 50_000  # personas tokenised and hashed at a time
METHOD = "minhash"
SIGNATURES = "minhash_signatures"
DUCKDB_MEMORY = "256MB"  # DuckDB's cap while the task runs

# The plugin's own table: signatures, so new personas are compared with kept ones without rehashing
# them. Stores made before plugins owned their tables already have it (a core migration made it then).
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS minhash_signatures (
        persona_id VARCHAR NOT NULL,
        num_perm INTEGER NOT NULL,
        ngram INTEGER NOT NULL,
        signature BLOB NOT NULL           -- num_perm little-endian uint32 minima
    );
    """
]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="word-set Jaccard at or above which a persona is a near-duplicate")
    num_perm: int = Field(128, ge=4, le=1024, description="hash functions (permutations) per signature")
    bands: int = Field(21, ge=1, le=512, description="LSH bands; bands x rows <= num-perm")
    rows: int = Field(6, ge=1, le=64, description="signature rows per band")
    ngram: int = Field(1, ge=1, le=8, description="words per shingle (the paper: 1)")
    fresh: bool = Field(False, description="forget earlier minhash results and check every persona again")

    @model_validator(mode="after")
    def _bands_fit(self) -> "Options":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num-perm {self.num_perm}")
        return self


@dataclass
class Hashed:
    """The new personas, hashed: word sets, band keys (bands x personas), set hashes, word bitmaps."""

    docs: TokenSets
    keys: np.ndarray
    set_hashes: np.ndarray
    bitmaps: np.ndarray


class MinHashDeduplicator(DedupOutline, Deduplicator):
    name = METHOD
    description = "near-duplicate personas by MinHash LSH on word n-grams, verified by exact Jaccard"
    Options = Options
    uses_backend = False
    batch_rows = CHUNK
    dedup_step = 2  # `personahub dedup`: after the quality filter, before embeddings
    dedup_measure = "jaccard"  # `personahub dedup --jaccard` sets its threshold
    bootstrap_step = 2  # the main job: dedup the personas the bootstrap made

    def run(self, ctx) -> None:
        # By default DuckDB caches what it reads and writes up to 80% of RAM; here it only streams
        # personas in and signatures and marks out, while the task's own arrays hold the weight.
        # Signatures are random bytes: DuckDB's dictionary+FSST analysis of them finds nothing to
        # compress and triples the time to write them (a DuckDB before 1.3 has no dict_fsst to skip).
        with ctx.store.tuned(memory_limit=DUCKDB_MEMORY, disabled_compression_methods="dict_fsst"):
            super().run(ctx)

    def forget_own(self, ctx) -> None:
        ctx.store.delete(SIGNATURES)

    def prepare(self, ctx) -> None:
        # Signatures of an interrupted run (written before its checks) are redone.
        ctx.store.delete(SIGNATURES, unchecked_by=METHOD)

    def compare(self, ctx, count, batches) -> None:
        if ctx.settings.executor == "ray":  # corpora larger than one machine: band buckets via a Ray shuffle
            from .distributed import compare_on_ray

            return compare_on_ray(self, ctx, batches)
        o = self.options
        vocab = Vocabulary(o.ngram)
        hasher = MinHasher(o.num_perm)
        new_ids, hashed = self.hash_new(ctx, count, batches, vocab, hasher)
        ref_ids, ref_keys = self.kept_signatures(ctx, vocab, hasher)
        marks, stats = self.near_duplicates(ctx, vocab, new_ids, hashed, ref_ids, ref_keys)
        self.mark(ctx, new_ids, marks)
        empty = int((hashed.docs.lengths == 0).sum())
        if empty:
            ctx.note(f"minhash: {empty} personas have no words (empty or only punctuation); not compared "
                     f"(the quality filter marks them)")
        ctx.note(f"minhash: checked {len(new_ids)} new personas against {len(ref_ids)} kept ones "
                 f"({o.bands} bands x {o.rows} rows); {stats['candidates']} band matches in {stats['slices']} "
                 f"slices, {stats['checked']} past the size and bitmap bounds, {stats['edit_pairs']} one-word edits "
                 f"among short personas; {stats['verified']} at Jaccard >= "
                 f"{o.threshold}; marked {marks.num_rows} near-duplicates ({stats['copies']} exact copies)")

    # -- hashing -------------------------------------------------------------------------------
    def hash_new(self, ctx, n: int, batches: Iterable[pa.RecordBatch], vocab: Vocabulary,
                 hasher: MinHasher) -> tuple[pa.Array, Hashed]:
        """Tokenise and sign the n new personas batch by batch as they stream from the store, storing
        each batch's signatures (a persona without words too: its all-ones signature says it was
        hashed and is empty). Only ids and word ids are kept, never the texts."""
        o = self.options
        # Filled in place: concatenating per-batch pieces would briefly hold two copies.
        keys = np.empty((o.bands, n), dtype=np.uint64)
        hashes = np.empty(n, dtype=np.uint64)
        bitmaps = np.empty((BITMAP_WORDS, n), dtype=np.uint64)
        lengths = np.empty(n, dtype=np.int64)
        ids, flats = [], []
        start = 0
        with ctx.progress("minhash: hashing", total=n) as progress:
            for batch in batches:
                stop = start + batch.num_rows
                docs = vocab.tokenise(batch.column("persona").to_pylist())
                sig = hasher.signatures(docs, vocab.hashes)
                self.store_signatures(ctx, batch.column("id"), sig)
                keys[:, start:stop] = band_keys(sig, o.bands, o.rows).T
                hashes[start:stop] = set_hashes(docs, vocab.hashes)
                bitmaps[:, start:stop] = word_bitmaps(docs, vocab.hashes)
                lengths[start:stop] = docs.lengths
                ids.append(batch.column("id").cast(pa.string()))
                flats.append(docs.flat)
                progress.update(progress.task_ids[0], advance=batch.num_rows)
                start = stop
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return pa.concat_arrays(ids), Hashed(TokenSets(np.concatenate(flats), offsets), keys, hashes, bitmaps)

    def store_signatures(self, ctx, ids: pa.Array, sig: np.ndarray) -> None:
        if len(sig) == 0:
            return
        o = self.options
        offsets = pa.py_buffer((np.arange(len(sig) + 1, dtype=np.int32) * (4 * o.num_perm)).tobytes())
        data = pa.py_buffer(np.ascontiguousarray(sig, "<u4").tobytes())
        blobs = pa.Array.from_buffers(pa.binary(), len(sig), [None, offsets, data])
        ctx.store.append(SIGNATURES, pa.table({"persona_id": ids, "signature": blobs}),
                         constants={"num_perm": o.num_perm, "ngram": o.ngram})

    def kept_signatures(self, ctx, vocab: Vocabulary, hasher: MinHasher) -> tuple[pa.Array, np.ndarray]:
        """Ids and band keys (bands x personas) of the personas already checked and kept, in creation
        order. Their stored signatures are reused; those made with other settings (num-perm, ngram)
        are made again."""
        o, store = self.options, ctx.store
        same_settings, settings = "t.num_perm = ? AND t.ngram = ?", [o.num_perm, o.ngram]
        kept = store.select_personas(checked_by=METHOD, columns=("id",)).column("id")
        signed = store.read(SIGNATURES, ["persona_id"], where=same_settings, params=settings).column("persona_id")
        stale_ids = kept.filter(pc.invert(pc.is_in(kept, value_set=signed.combine_chunks())))
        if len(stale_ids):
            ctx.note(f"minhash: re-hashing {len(stale_ids)} kept personas signed with other settings")
            store.delete(SIGNATURES, persona_ids=stale_ids)
            stale = store.select_personas(ids=stale_ids, columns=("id", "persona"))
            for start in range(0, stale.num_rows, CHUNK):
                part = stale.slice(start, CHUNK)
                docs = vocab.tokenise(part.column("persona").to_pylist())
                self.store_signatures(ctx, part.column("id"), hasher.signatures(docs, vocab.hashes))
        reader = store.read(SIGNATURES, ["persona_id", "signature"], where=same_settings, params=settings,
                            of_personas={"checked_by": METHOD}, batch_rows=CHUNK)
        ids = [pa.array([], pa.string())]
        keys = [np.zeros((o.bands, 0), dtype=np.uint64)]
        for batch in reader:
            sig = signature_matrix(batch.column(1), o.num_perm)
            has_words = ~(sig == NO_WORDS).all(axis=1)
            keys.append(band_keys(sig[has_words], o.bands, o.rows).T)
            ids.append(batch.column(0).filter(pa.array(has_words)).cast(pa.string()))
        return pa.concat_arrays(ids), np.concatenate(keys, axis=1)

    # -- comparing -----------------------------------------------------------------------------
    def near_duplicates(self, ctx, vocab: Vocabulary, new_ids: pa.Array, new: Hashed, ref_ids: pa.Array,
                        ref_keys: np.ndarray) -> tuple[pa.Table, dict]:
        """Documents are numbered kept-first (0..R-1) then new (R..R+N-1): the keep-earliest order."""
        o = self.options
        R, N = len(ref_ids), len(new_ids)
        lengths = new.docs.lengths
        # Exact copies (same word set) collapse onto their first occurrence before LSH, so a
        # thousand copies cost a thousand checks, not half a million pairs.
        has_words = np.flatnonzero(lengths > 0)
        order = has_words[np.argsort(new.set_hashes[has_words], kind="stable")]  # equal sets: earliest first
        hashes = new.set_hashes[order]
        starts = np.concatenate([[True], hashes[1:] != hashes[:-1]]) if len(order) else np.zeros(0, bool)
        rep = np.arange(N, dtype=np.int64)
        rep[order] = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        copies = np.flatnonzero(rep != np.arange(N))
        copies = copies[jaccard(new.docs, rep[copies], copies) == 1.0]  # a set-hash collision is no copy
        is_copy = np.zeros(N, dtype=bool)
        is_copy[copies] = True

        members = np.concatenate([np.arange(R), R + np.flatnonzero((lengths > 0) & ~is_copy)])
        keys = np.concatenate([ref_keys, new.keys], axis=1) if R else new.keys
        refs = kept_sharing_a_key(keys, members, R) if R else np.zeros(0, np.int64)
        docs, bitmaps = self.with_kept(ctx, vocab, new, ref_ids, refs)
        # A pair whose smaller set is short can only differ by one word: those are found by their
        # one-word edits, exactly, and only longer sets go through the bands. On short personas from
        # a small vocabulary nearly every pair shares a band key, and the bands would compare them all.
        short = one_word_reach(o.threshold)
        i_short, j_short = one_word_edit_pairs(docs, vocab.hashes, members, R, short, int(short / o.threshold + 1e-9))
        smaller = np.minimum(docs.lengths[i_short], docs.lengths[j_short])
        i_short, j_short = i_short[smaller <= short], j_short[smaller <= short]  # longer pairs: the bands
        sim_short = jaccard(docs, i_short, j_short)
        hit = sim_short >= o.threshold
        with ctx.progress("minhash: bands", total=o.bands) as progress:
            i, j, sim, stats = near_duplicate_pairs(
                keys, members[docs.lengths[members] > short], R, docs, bitmaps, o.threshold,
                on_band=lambda: progress.update(progress.task_ids[0], advance=1))
        i, j, sim = (np.concatenate([i, i_short[hit]]), np.concatenate([j, j_short[hit]]),
                     np.concatenate([sim, sim_short[hit]]))
        stats = {**stats, "edit_pairs": len(i_short), "verified": len(i)}
        duplicate_of, best = keep_earliest(R + N, i, j, sim)
        # A copy goes where its first occurrence went: kept -> duplicate of it; dropped -> of its partner.
        first = R + rep[copies]
        first_dup = duplicate_of[first]
        duplicate_of[R + copies] = np.where(first_dup >= 0, first_dup, first)
        best[R + copies] = np.where(first_dup >= 0, best[first], 1.0)
        roots = cluster_roots(np.concatenate([i, first]), np.concatenate([j, R + copies]))

        dropped = R + np.flatnonzero(duplicate_of[R:] >= 0)
        partner = duplicate_of[dropped]
        cluster = np.array([roots[d] for d in dropped.tolist()], dtype=np.int64)
        ids = pa.concat_arrays([ref_ids, new_ids])
        similarity = np.round(best[dropped], 6)
        marks = pa.table({
            "persona_id": ids.take(dropped), "duplicate_of": ids.take(partner), "cluster_id": ids.take(cluster),
            "similarity": similarity,
            "reason": [f"word {o.ngram}-gram Jaccard {s:.3f} >= {o.threshold}" for s in similarity.tolist()],
        })
        return marks, {**stats, "copies": int(len(copies))}

    def with_kept(self, ctx, vocab: Vocabulary, new: Hashed, ref_ids: pa.Array,
                  refs: np.ndarray) -> tuple[TokenSets, np.ndarray]:
        """Word sets and bitmaps in the kept-first numbering: the given kept personas (read and
        tokenised now: only those that share a band key with a new one) followed by the new ones;
        other kept ones are empty."""
        R = len(ref_ids)
        if R == 0:
            return new.docs, new.bitmaps
        ref_lengths = np.zeros(R, dtype=np.int64)
        ref_bitmaps = np.zeros((BITMAP_WORDS, R), dtype=np.uint64)
        flats = []
        # Stored in the kept-first numbering: a wanted persona's position among ``refs`` gives its number.
        _, batches = ctx.store.stream_personas(ids=ref_ids.take(refs), columns=("persona",), batch_rows=CHUNK)
        for batch in batches:
            k = refs[batch.column("position").to_numpy()]
            docs = vocab.tokenise(batch.column("persona").to_pylist())
            ref_lengths[k] = docs.lengths
            ref_bitmaps[:, k] = word_bitmaps(docs, vocab.hashes)
            flats.append(docs.flat)
        lengths = np.concatenate([ref_lengths, new.docs.lengths])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return (TokenSets(np.concatenate(flats + [new.docs.flat]), offsets),
                np.concatenate([ref_bitmaps, new.bitmaps], axis=1))


def signature_matrix(blobs: pa.Array, num_perm: int) -> np.ndarray:
    """Stored signature blobs (all num_perm x 4 bytes) as a matrix, without a Python object per row."""
    width = 4 * num_perm
    offset_type = np.int64 if pa.types.is_large_binary(blobs.type) else np.int32
    offsets = np.frombuffer(blobs.buffers()[1], dtype=offset_type)[blobs.offset : blobs.offset + len(blobs) + 1]
    data = np.frombuffer(blobs.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    if len(data) != width * len(blobs):
        raise ValueError("minhash_signatures holds a signature of the wrong length")
    return data.view("<u4").reshape(len(blobs), num_perm)


@hookimpl
def register_tasks(register):
    register(MinHashDeduplicator)


@hookimpl
def register_migrations(register):
    register("minhash", MIGRATIONS)
