"""MinHash near-duplicate removal, as in the paper: word 1-grams, 128 permutations, Jaccard 0.9.

LSH with 16 bands of 8 rows (a pair at Jaccard 0.9 becomes a candidate with probability 0.9999;
the usual few-band settings for 0.9 miss 17-30% of duplicates), then the exact Jaccard of every
candidate pair's word sets (personas share template words, so signature matches alone would drop
far too much), then keep-earliest. Signatures are stored, so a later run hashes only new personas
and compares them with the kept ones. See docs/dedup.md for the arithmetic.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from personahub_core.dedup import KEPT, checked, cluster_roots, forget, keep_earliest, record, unchecked_personas
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator

from .engine import MinHasher, TokenSets, Vocabulary, band_keys, candidate_pairs, jaccard, set_hashes

NO_WORDS = np.iinfo(np.uint32).max  # the signature of a persona without words is all of these
CHUNK = 50_000  # personas tokenised and hashed at a time
METHOD = "minhash"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="word-set Jaccard at or above which a persona is a near-duplicate")
    num_perm: int = Field(128, ge=4, le=1024, description="hash functions (permutations) per signature")
    bands: int = Field(16, ge=1, le=512, description="LSH bands; bands x rows <= num-perm")
    rows: int = Field(8, ge=1, le=64, description="signature rows per band")
    ngram: int = Field(1, ge=1, le=8, description="words per shingle (the paper: 1)")
    fresh: bool = Field(False, description="forget earlier minhash results and check every persona again")

    @model_validator(mode="after")
    def _bands_fit(self) -> "Options":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num-perm {self.num_perm}")
        return self


class MinHashDeduplicator(Deduplicator):
    name = METHOD
    description = "near-duplicate personas by MinHash LSH on word n-grams, verified by exact Jaccard"
    Options = Options
    uses_backend = False

    def run(self, ctx) -> None:
        o, store = self.options, ctx.store
        if o.fresh:
            forget(store, METHOD)
            store.con.execute("DELETE FROM minhash_signatures")
        # Signatures of an interrupted run (written before its checks) are redone.
        store.con.execute(f"DELETE FROM minhash_signatures s WHERE NOT EXISTS (SELECT 1 FROM dedup_checked c "
                          f"WHERE c.persona_id = s.persona_id AND c.method = '{METHOD}')")
        total = store.count("personas")
        if total == 0:
            ctx.note("minhash: the store has no personas; nothing to deduplicate")
            return
        new = unchecked_personas(store, METHOD, ctx.where, ctx.limit)
        if new.num_rows == 0:
            ctx.note(f"minhash: all {total} personas are already checked or marked; nothing new")
            return
        vocab = Vocabulary(o.ngram)
        hasher = MinHasher(o.num_perm)
        new_ids = new.column("id").to_pylist()
        docs, keys, hashes = self.hash_new(ctx, new, vocab, hasher)
        ref_ids, ref_keys = self.kept_signatures(ctx, vocab, hasher)
        marks, stats = self.compare(ctx, vocab, new_ids, docs, keys, hashes, ref_ids, ref_keys)
        record(store, METHOD, ctx.run_id, new_ids, marks)
        ctx.stats.items_done += len(new_ids)
        empty = int((docs.lengths == 0).sum())
        if empty:
            ctx.note(f"minhash: {empty} personas have no words (empty or only punctuation); not compared "
                     f"(the quality filter marks them)")
        ctx.note(f"minhash: checked {len(new_ids)} new personas against {len(ref_ids)} kept ones; "
                 f"{stats['candidates']} candidate pairs, {stats['verified']} at Jaccard >= {o.threshold}; "
                 f"marked {len(marks)} near-duplicates ({stats['copies']} exact copies)")

    # -- hashing -------------------------------------------------------------------------------
    def hash_new(self, ctx, new: pa.Table, vocab: Vocabulary, hasher: MinHasher):
        """Tokenise and sign the new personas chunk by chunk, storing each chunk's signatures
        (a persona without words too: its all-ones signature says it was hashed and is empty)."""
        o = self.options
        flats, lengths, keys, hashes = [], [], [], []
        with ctx.progress("minhash", total=new.num_rows) as progress:
            for start in range(0, new.num_rows, CHUNK):
                part = new.slice(start, CHUNK)
                docs = vocab.tokenise(part.column("persona").to_pylist())
                sig = hasher.signatures(docs, vocab.hashes)
                self.store_signatures(ctx, part.column("id"), sig)
                flats.append(docs.flat)
                lengths.append(docs.lengths)
                keys.append(band_keys(sig, o.bands, o.rows))
                hashes.append(set_hashes(docs, vocab.hashes))
                progress.update(progress.task_ids[0], advance=part.num_rows)
        all_lengths = np.concatenate(lengths)
        offsets = np.concatenate([[0], np.cumsum(all_lengths)]).astype(np.int64)
        return TokenSets(np.concatenate(flats), offsets), np.concatenate(keys), np.concatenate(hashes)

    def store_signatures(self, ctx, ids: pa.Array, sig: np.ndarray) -> None:
        if len(sig) == 0:
            return
        o = self.options
        offsets = pa.py_buffer((np.arange(len(sig) + 1, dtype=np.int32) * (4 * o.num_perm)).tobytes())
        data = pa.py_buffer(np.ascontiguousarray(sig, "<u4").tobytes())
        blobs = pa.Array.from_buffers(pa.binary(), len(sig), [None, offsets, data])
        con = ctx.store.con
        con.register("_signatures", pa.table({"persona_id": ids, "signature": blobs}))
        try:
            con.execute("INSERT INTO minhash_signatures SELECT persona_id, ?, ?, signature FROM _signatures",
                        [o.num_perm, o.ngram])
        finally:
            con.unregister("_signatures")

    def kept_signatures(self, ctx, vocab: Vocabulary, hasher: MinHasher) -> tuple[list[str], np.ndarray]:
        """Band keys of the personas already checked and kept, in creation order. Their stored
        signatures are reused; those made with other settings (num-perm, ngram) are made again."""
        o, store = self.options, ctx.store
        stale = store.con.sql(
            f"SELECT p.seq, p.id, p.persona FROM personas p WHERE {KEPT} AND {checked(METHOD)} "
            f"AND NOT EXISTS (SELECT 1 FROM minhash_signatures s WHERE s.persona_id = p.id AND s.num_perm = {o.num_perm} "
            f"AND s.ngram = {o.ngram}) ORDER BY p.seq"
        ).to_arrow_table()
        if stale.num_rows:
            ctx.note(f"minhash: re-hashing {stale.num_rows} kept personas signed with other settings")
            store.con.execute("DELETE FROM minhash_signatures WHERE persona_id IN (SELECT unnest(?))",
                              [stale.column("id").to_pylist()])
            for start in range(0, stale.num_rows, CHUNK):
                part = stale.slice(start, CHUNK)
                docs = vocab.tokenise(part.column("persona").to_pylist())
                self.store_signatures(ctx, part.column("id"), hasher.signatures(docs, vocab.hashes))
        reader = store.con.sql(
            f"SELECT p.id, s.signature FROM minhash_signatures s JOIN personas p ON p.id = s.persona_id "
            f"WHERE {KEPT} AND {checked(METHOD)} AND s.num_perm = {o.num_perm} AND s.ngram = {o.ngram} ORDER BY p.seq"
        ).to_arrow_reader(CHUNK)
        ids: list[str] = []
        keys = [np.zeros((0, o.bands), dtype=np.uint64)]
        for batch in reader:
            sig = signature_matrix(batch.column(1), o.num_perm)
            has_words = ~(sig == NO_WORDS).all(axis=1)
            keys.append(band_keys(sig[has_words], o.bands, o.rows))
            ids.extend(batch.column(0).filter(pa.array(has_words)).to_pylist())
        return ids, np.concatenate(keys)

    # -- comparing -----------------------------------------------------------------------------
    def compare(self, ctx, vocab, new_ids, docs, keys, hashes, ref_ids, ref_keys) -> tuple[list[dict], dict]:
        """Documents are numbered kept-first (0..R-1) then new (R..R+N-1): the keep-earliest order."""
        o = self.options
        R, N = len(ref_ids), len(new_ids)
        lengths = docs.lengths
        # Exact copies (same word set) collapse onto their first occurrence before LSH, so a
        # thousand copies cost a thousand checks, not half a million pairs.
        has_words = np.flatnonzero(lengths > 0)
        order = has_words[np.argsort(hashes[has_words], kind="stable")]  # equal sets: earliest first
        starts = np.concatenate([[True], hashes[order][1:] != hashes[order][:-1]]) if len(order) else np.zeros(0, bool)
        rep = np.full(N, -1, dtype=np.int64)
        rep[order] = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        copies = has_words[rep[has_words] != has_words]
        local = self.local_tokens(ctx, vocab, docs, ref_ids, np.zeros(0, np.int64))
        same = jaccard(local, R + rep[copies], R + copies) == 1.0
        copies = copies[same]  # a set-hash collision (never seen) is compared like any other document
        is_copy = np.zeros(N, dtype=bool)
        is_copy[copies] = True

        members = np.concatenate([np.arange(R), R + np.flatnonzero((lengths > 0) & ~is_copy)])
        a, b = candidate_pairs(np.concatenate([ref_keys, keys])[members], R)
        i, j = members[a], members[b]
        local = self.local_tokens(ctx, vocab, docs, ref_ids, np.unique(i[i < R]))
        sim = jaccard(local, i, j)
        ok = sim >= o.threshold
        i, j, sim = i[ok], j[ok], sim[ok]
        duplicate_of, best = keep_earliest(R + N, i, j, sim)
        # A copy goes where its first occurrence went: kept -> duplicate of it; dropped -> of its partner.
        first_local = R + rep[copies]
        rep_dup = duplicate_of[first_local]
        duplicate_of[R + copies] = np.where(rep_dup >= 0, rep_dup, first_local)
        best[R + copies] = np.where(rep_dup >= 0, best[first_local], 1.0)
        roots = cluster_roots(np.concatenate([i, first_local]), np.concatenate([j, R + copies]))

        def pid(k: int) -> str:
            return ref_ids[k] if k < R else new_ids[k - R]

        marks = []
        for k in np.flatnonzero(duplicate_of[R:] >= 0).tolist():
            partner = int(duplicate_of[R + k])
            marks.append({
                "persona_id": new_ids[k], "duplicate_of": pid(partner), "cluster_id": pid(roots.get(R + k, partner)),
                "similarity": round(float(best[R + k]), 6),
                "reason": f"word {o.ngram}-gram Jaccard {best[R + k]:.3f} >= {o.threshold}",
            })
        return marks, {"candidates": int(len(ok)), "verified": int(ok.sum()), "copies": int(len(copies))}

    def local_tokens(self, ctx, vocab: Vocabulary, docs: TokenSets, ref_ids: list[str], refs: np.ndarray) -> TokenSets:
        """Word sets in the kept-first numbering: the given kept personas (read and tokenised now:
        only those in candidate pairs) followed by the new ones; other kept ones are empty."""
        R = len(ref_ids)
        ref_lengths = np.zeros(R, dtype=np.int64)
        flat = [np.zeros(0, np.int32)]
        if len(refs):
            wanted = [ref_ids[k] for k in refs.tolist()]
            rows = dict(ctx.store.query("SELECT id, persona FROM personas WHERE id IN (SELECT unnest(?))", [wanted]))
            ref_docs = vocab.tokenise([rows[w] for w in wanted])
            ref_lengths[refs] = ref_docs.lengths
            flat = [ref_docs.flat]
        lengths = np.concatenate([ref_lengths, docs.lengths])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return TokenSets(np.concatenate(flat + [docs.flat]), offsets)


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
