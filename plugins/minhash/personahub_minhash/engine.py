"""MinHash near-duplicate detection in numpy: signatures, LSH banding, exact Jaccard, keep-earliest.

    texts ─> word n-gram sets (ids from one vocabulary) ─> signatures: for every distinct word, 128
    hash values (a vocabulary x 128 matrix); a document's signature is the column-wise minimum over
    its words' rows ─> band keys (b bands of r rows, each slice hashed to 64 bits) ─> candidate
    pairs: documents sharing a band key, made band by band in bounded slices ─> two exact bounds
    (set sizes, word bitmaps) rule most of them out at the cost of a few array look-ups ─> exact
    Jaccard of the token SETS of the rest ─> keep the earliest (``personahub_core.dedup.keep_earliest``).

Nothing here touches the store; the task in ``__init__`` feeds it and writes its answers.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Callable
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from personahub_core.dedup import ragged_arange
from personahub_core.words import kind, paired, words

SEPARATOR = "\x00"  # between texts tokenised together: neither a word character nor whitespace
# Fixed, so signatures stored by one run can be compared with those of the next.
HASH_SEED = 1_000_003
SIGNATURE_BLOCK = 1 << 16  # rows of one long document gathered at once
LONG_DOCUMENT = 512  # words; longer documents are hashed on their own, in blocks
JACCARD_BLOCK = 1 << 22  # token look-ups per exact-Jaccard batch
PAIRS_PER_SLICE = 1 << 20  # candidate pairs made and checked at a time (about 100 MB of working arrays)
EDIT_KEYS_PER_PASS = 1 << 22  # one-word-edit keys sorted at a time (about 100 MB of working arrays)
BITMAP_WORDS = 2  # 64-bit words per document bitmap
BITMAP_BITS = 7  # log2(64 x BITMAP_WORDS): the top bits of a word's hash pick its bit
_U64 = np.uint64


def shingles(text: str, ngram: int) -> set[str]:
    """Lower-cased word n-grams (``personahub_core.words``); a text shorter than n words is one shingle
    of all its words."""
    found = words(text)
    if ngram == 1 or len(found) <= ngram:
        return set(found) if ngram == 1 else ({" ".join(found)} if found else set())
    return {" ".join(found[i : i + ngram]) for i in range(len(found) - ngram + 1)}


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a plain sort: faster here than np.unique's hash table)."""
    values = np.sort(values)
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if len(values) else values


class WordCharacters(dict):
    """A str.translate table for ``paired`` text: a space around each ideograph, a space for every
    other character that is not a word character (alphanumeric, "_", a Thai-like letter or mark) or
    the separator. So translate + split finds what ``words`` finds, three times faster than its regex.
    Each character is classified the first time it is seen."""

    def __missing__(self, code: int) -> int | str:
        char = chr(code)
        how = kind(char)
        if how == "ideograph":
            self[code] = f" {char} "
        else:
            word = char.isalnum() or char == "_" or char == SEPARATOR or how == "paired"
            self[code] = code if word else 32
        return self[code]


WORD_CHARACTERS = WordCharacters()


@dataclass
class TokenSets:
    """Documents as sets of word ids: ``flat[offsets[k]:offsets[k+1]]`` (distinct, unordered)."""

    flat: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = documents + 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


class Vocabulary:
    """Shingle -> dense id, and a stable 64-bit hash per id (blake2b, independent of the process)."""

    def __init__(self, ngram: int = 1):
        self.ngram = ngram
        # A missing shingle gets the next id: ids[w] assigns len(ids) from C, with no Python call.
        self.ids: defaultdict[str, int] = defaultdict()
        self.ids.default_factory = self.ids.__len__
        self.ids[SEPARATOR]
        self._hashes = array("Q")

    def tokenise(self, texts: list[str]) -> TokenSets:
        if self.ngram == 1:
            return self._tokenise_words(texts)
        lookup = self.ids.__getitem__
        flat = array("i")
        offsets = array("q", [0])
        for text in texts:
            flat.extend(map(lookup, shingles(text, self.ngram)))
            offsets.append(len(flat))
        self._hash_new_words()
        return TokenSets(np.frombuffer(flat, dtype=np.int32).copy() if flat else np.zeros(0, np.int32),
                         np.frombuffer(offsets, dtype=np.int64).copy())

    def _tokenise_words(self, texts: list[str]) -> TokenSets:
        """Word sets of many texts at once: one translate and split of the joined texts (a
        separator token between them), ids by dictionary, per-text distinct words by one numpy sort."""
        if not texts:
            return TokenSets(np.zeros(0, np.int32), np.zeros(1, np.int64))
        between = f" {SEPARATOR} "
        joined = between.join(texts)
        if joined.count(SEPARATOR) != len(texts) - 1:  # a text holding the separator itself
            joined = between.join(t.replace(SEPARATOR, " ") for t in texts)
        found = paired(joined.lower()).translate(WORD_CHARACTERS).split()
        token_ids = np.fromiter(map(self.ids.__getitem__, found), dtype=np.int64, count=len(found))
        is_sep = token_ids == self.ids[SEPARATOR]
        doc = np.cumsum(is_sep)[~is_sep]
        keys = distinct((doc << 32) | token_ids[~is_sep])
        self._hash_new_words()
        offsets = np.searchsorted(keys >> 32, np.arange(len(texts) + 1)).astype(np.int64)
        return TokenSets((keys & 0xFFFFFFFF).astype(np.int32), offsets)

    def _hash_new_words(self) -> None:
        start = len(self._hashes)
        if start == len(self.ids):
            return
        new_words = list(self.ids)[start:]  # dicts keep insertion order, which is id order
        self._hashes.extend(
            int.from_bytes(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for w in new_words
        )

    @property
    def hashes(self) -> np.ndarray:
        return np.frombuffer(self._hashes, dtype=np.uint64)


class MinHasher:
    """``num_perm`` hash functions h(x) = ((a*x + b) mod 2^64) >> 32 (multiply-add-shift), a odd."""

    def __init__(self, num_perm: int, seed: int = HASH_SEED):
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * _U64(2) + _U64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def hash_words(self, word_hashes: np.ndarray) -> np.ndarray:
        """vocabulary x num_perm matrix of 32-bit values."""
        return ((word_hashes[:, None] * self.a[None, :] + self.b[None, :]) >> _U64(32)).astype(np.uint32)

    def signatures(self, docs: TokenSets, word_hashes: np.ndarray) -> np.ndarray:
        """One row per document; a document without tokens gets all-ones (matches nothing real)."""
        n = len(docs)
        out = np.full((n, self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        if n == 0 or len(docs.flat) == 0:
            return out
        # Hash only the words these documents use; rows are found by position in that subset.
        used = distinct(docs.flat)
        local = np.searchsorted(used, docs.flat)
        table = self.hash_words(word_hashes[used])
        lengths = docs.lengths
        long_docs = np.flatnonzero(lengths > LONG_DOCUMENT)
        for d in long_docs.tolist():
            lo, hi = int(docs.offsets[d]), int(docs.offsets[d + 1])
            for s in range(lo, hi, SIGNATURE_BLOCK):
                np.minimum(out[d], table[local[s : min(s + SIGNATURE_BLOCK, hi)]].min(axis=0), out=out[d])
        # Short documents: longest first, so the documents that have a p-th word are a prefix;
        # one vectorised minimum per word position instead of one small reduction per document.
        short = np.flatnonzero(lengths <= LONG_DOCUMENT)
        order = short[np.argsort(-lengths[short], kind="stable")]
        ordered_len = lengths[order]
        starts = docs.offsets[order]
        acc = out[order]
        for p in range(int(ordered_len[0]) if len(order) else 0):
            count = int(np.searchsorted(-ordered_len, -p, side="left"))  # documents longer than p
            np.minimum(acc[:count], table[local[starts[:count] + p]], out=acc[:count])
        out[order] = acc
        return out


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """documents x bands: each band's ``rows`` values hashed into one 64-bit key."""
    rng = np.random.default_rng(HASH_SEED + 1)
    mult = rng.integers(0, 2**63, size=rows, dtype=np.uint64) * _U64(2) + _U64(1)
    sig = signatures[:, : bands * rows].reshape(len(signatures), bands, rows).astype(np.uint64)
    keys = (sig * mult).sum(axis=2, dtype=np.uint64)
    keys ^= keys >> _U64(29)  # mix the high bits down so equal-key grouping sees them
    return keys


def jaccard(docs: TokenSets, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the token sets of documents i[k] and j[k]."""
    result = np.zeros(len(i), dtype=np.float64)
    if len(i) == 0:
        return result
    lengths = docs.lengths
    involved = distinct(np.concatenate([i, j]))
    # Sorted keys (document << 32 | word id) of the involved documents: membership by binary search.
    inv_len = lengths[involved]
    positions = np.repeat(docs.offsets[involved], inv_len) + ragged_arange(inv_len)
    keys = np.sort((np.repeat(involved, inv_len) << 32) | docs.flat[positions].astype(np.int64))
    # Look up the shorter document's words in the longer one; batch to bound memory.
    swap = lengths[i] > lengths[j]
    short, long_ = np.where(swap, j, i), np.where(swap, i, j)
    cost = np.cumsum(lengths[short])
    start = 0
    while start < len(i):
        stop = max(int(np.searchsorted(cost, (cost[start - 1] if start else 0) + JACCARD_BLOCK, side="right")), start + 1)
        s, t = short[start:stop], long_[start:stop]
        counts = lengths[s]
        pos = np.repeat(docs.offsets[s], counts) + ragged_arange(counts)
        query = (np.repeat(t, counts) << 32) | docs.flat[pos].astype(np.int64)
        hit = np.searchsorted(keys, query)
        hit = keys[np.minimum(hit, len(keys) - 1)] == query
        inter = np.bincount(np.repeat(np.arange(stop - start), counts), weights=hit, minlength=stop - start)
        union = lengths[s] + lengths[t] - inter
        result[start:stop] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        start = stop
    return result


def _per_document(ufunc: np.ufunc, values: np.ndarray, docs: TokenSets) -> np.ndarray:
    """``ufunc`` reduced over each document's tokens (0 for a document without tokens: reduceat
    alone would give it its neighbour's first value, or fail when it comes last)."""
    out = np.zeros(len(docs), dtype=values.dtype)
    nonempty = docs.lengths > 0
    if nonempty.any():
        out[nonempty] = ufunc.reduceat(values, docs.offsets[:-1][nonempty])
    return out


def set_terms(word_hashes: np.ndarray) -> np.ndarray:
    """Words' hashes, mixed: the terms whose sum is a set hash."""
    h = word_hashes * _U64(0x9E3779B97F4A7C15)
    h ^= h >> _U64(31)
    return h


def set_hashes(docs: TokenSets, word_hashes: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each document's token set (order-free: a sum of its words' terms, so the
    hash of a set less one word is the set's hash less that word's term)."""
    return _per_document(np.add, set_terms(word_hashes[docs.flat]), docs)


def word_bitmaps(docs: TokenSets, word_hashes: np.ndarray) -> np.ndarray:
    """BITMAP_WORDS x documents: each document's words hashed into 64 x BITMAP_WORDS bits. Two sets
    differ in at least as many words as their bitmaps differ in bits, which bounds their Jaccard."""
    bit = (word_hashes[docs.flat] >> _U64(64 - BITMAP_BITS)).astype(np.int64)
    one = np.left_shift(_U64(1), (bit & 63).astype(np.uint64))
    zero = _U64(0)
    return np.stack([_per_document(np.bitwise_or, np.where(bit >> 6 == w, one, zero), docs)
                     for w in range(BITMAP_WORDS)])


def within_reach(lengths: np.ndarray, bitmaps: np.ndarray, i: np.ndarray, j: np.ndarray,
                 threshold: float) -> np.ndarray:
    """False where documents i and j certainly have Jaccard < threshold (never False otherwise).

    With a = |A|, b = |B| and d = |A xor B| (words in one set only), Jaccard = (a + b - d) / (a + b + d),
    so Jaccard >= t needs (1 + t) d <= (1 - t)(a + b). d is at least |a - b| and at least the
    number of bits in which the two bitmaps differ, so either lower bound can rule a pair out."""
    a, b = lengths[i], lengths[j]
    differ = np.abs(a - b)
    bits = np.bitwise_count(bitmaps[0, i] ^ bitmaps[0, j]).astype(np.int64)
    for w in range(1, len(bitmaps)):
        bits += np.bitwise_count(bitmaps[w, i] ^ bitmaps[w, j])
    np.maximum(differ, bits, out=differ)
    return (1 + threshold) * differ <= (1 - threshold) * (a + b) + 1e-9


def kept_sharing_a_key(keys: np.ndarray, members: np.ndarray, first_new: int) -> np.ndarray:
    """Documents below first_new that share some band key with a member at or above it: the only
    earlier documents a candidate pair can involve."""
    new = members[members >= first_new]
    needed = np.zeros(first_new, dtype=bool)
    for band in keys:
        needed |= np.isin(band[:first_new], band[new])
    return np.flatnonzero(needed)


def band_slices(band_keys: np.ndarray, members: np.ndarray, first_new: int, pairs_per_slice: int):
    """Yield (in_order, p, q) for one band: its members in bucket order, and the positions p < q in
    it of the pairs sharing a key whose later document is at or above first_new (earlier documents
    are already settled against each other), about ``pairs_per_slice`` pairs at a time.

    members is sorted. A stable sort of the keys puts each bucket in document order, and every
    member meets every earlier one in its bucket. The pairs are cut into slices by a running count,
    so memory is bounded by the slice however many pairs the corpus makes (on template-heavy text
    they grow faster than the corpus)."""
    n = len(members)
    positions = np.arange(n, dtype=np.int64)
    col = band_keys[members]
    order = np.argsort(col, kind="stable")
    ordered = col[order]
    starts = np.empty(n, dtype=bool)
    starts[:1] = True
    starts[1:] = ordered[1:] != ordered[:-1]
    del col, ordered
    in_order = members[order]
    group_start = np.maximum.accumulate(np.where(starts, positions, 0))
    earlier = positions - group_start
    earlier[in_order < first_new] = 0
    later_at = np.flatnonzero(earlier)
    counts = earlier[later_at]
    del order, earlier, starts, positions
    running = np.cumsum(counts)
    start = 0
    while start < len(later_at):
        done = int(running[start - 1]) if start else 0
        stop = max(int(np.searchsorted(running, done + pairs_per_slice, side="right")), start + 1)
        c, later = counts[start:stop], later_at[start:stop]
        first_of_each = running[start:stop] - c - done  # where each later document's pairs begin
        q = np.repeat(later, c)
        p = np.arange(len(q), dtype=np.int64) + np.repeat(group_start[later] - first_of_each, c)
        yield in_order, p, q
        start = stop


def first_shared_band(keys: np.ndarray, band: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """True where ``band`` is the first band in which documents i and j share a key, so a pair met
    in several bands is counted once, without holding the pairs of all bands to deduplicate them."""
    first = np.ones(len(i), dtype=bool)
    for earlier in keys[:band]:
        first &= earlier[i] != earlier[j]
    return first


def one_word_reach(threshold: float) -> int:
    """The most words a set can have while every set at Jaccard >= threshold from it is the same set
    or differs from it by one word. With a <= b words and d words in one set only, Jaccard >= t needs
    b <= a / t and d <= (1 - t)(a + b) / (1 + t), so d <= (1 - t) a / t, which is below 2 while
    a < 2t / (1 - t): 17 words at the paper's 0.9."""
    if threshold >= 1.0:
        return np.iinfo(np.int32).max  # only equal sets reach 1.0
    return max(0, math.ceil(2 * threshold / (1 - threshold) - 1e-9) - 1)


def one_word_edit_pairs(docs: TokenSets, word_hashes: np.ndarray, members: np.ndarray, first_new: int,
                        smaller_at_most: int, larger_at_most: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j, j >= first_new) of members whose word sets are equal or one is the other
    plus one word, the smaller of at most ``smaller_at_most`` words and the larger of at most
    ``larger_at_most`` (and set-hash collisions, which the exact Jaccard check removes).

    Each set gives its own hash and, through the sum form of ``set_hashes``, the hash of itself less
    each of its words: A and A + w meet where the whole of A meets A + w less w. The pairs are found by
    one sort of those keys per pass, never by enumerating documents that merely share words, so
    short personas written from a small vocabulary cost their length each, not a pair with every
    other. Keys are sorted ``EDIT_KEYS_PER_PASS`` at a time (passes split the key space)."""
    lengths = docs.lengths[members]
    whole = members[(lengths >= 1) & (lengths <= smaller_at_most)]
    larger = members[(lengths >= 2) & (lengths <= larger_at_most)]
    hashes = set_hashes(docs, word_hashes)
    counts = docs.lengths[larger]
    positions = np.repeat(docs.offsets[larger], counts) + ragged_arange(counts)
    less_one = np.repeat(hashes[larger], counts) - set_terms(word_hashes[docs.flat[positions]])
    keys = np.concatenate([hashes[whole], less_one])
    owner = np.concatenate([whole, np.repeat(larger, counts)])
    is_whole = np.concatenate([np.ones(len(whole), bool), np.zeros(len(less_one), bool)])
    found_i, found_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    passes = max(1, -(-len(keys) // EDIT_KEYS_PER_PASS))
    for part in range(passes):
        take = np.flatnonzero(keys % _U64(passes) == _U64(part)) if passes > 1 else np.arange(len(keys))
        order = take[np.argsort(keys[take], kind="stable")]
        k = keys[order]
        # For every whole-set key: the other keys equal to it (its group, less itself).
        start = np.searchsorted(k, k, side="left")
        stop = np.searchsorted(k, k, side="right")
        at = np.flatnonzero(is_whole[order] & (stop - start > 1))
        counts_at = (stop - start)[at]
        x = np.repeat(owner[order][at], counts_at)
        y = owner[order][np.repeat(start[at], counts_at) + ragged_arange(counts_at)]
        keep = x != y
        found_i.append(np.minimum(x, y)[keep])
        found_j.append(np.maximum(x, y)[keep])
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    pair = distinct((i << 32) | j)  # two equal sets meet twice, once from each side
    i, j = pair >> 32, pair & 0xFFFFFFFF
    keep = j >= first_new  # kept documents are already settled against each other
    return i[keep], j[keep]


def near_duplicate_pairs(keys: np.ndarray, members: np.ndarray, first_new: int, docs: TokenSets,
                         bitmaps: np.ndarray, threshold: float, pairs_per_slice: int | None = None,
                         on_band: Callable[[], None] | None = None):
    """All pairs (i < j, j >= first_new) of members that share a band key (keys: bands x documents)
    and have exact Jaccard >= threshold, with that Jaccard; and counts: band matches (candidates),
    those the bounds could not rule out, pairs at or above the threshold, and slices. Only the
    found pairs are kept, so memory is the slice's plus the near-duplicates'."""
    lengths = docs.lengths
    found_i, found_j, found_sim = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
    counts = {"candidates": 0, "checked": 0, "verified": 0, "slices": 0}
    for band in range(len(keys)):
        ordered = None
        for in_order, p, q in band_slices(keys[band], members, first_new, pairs_per_slice or PAIRS_PER_SLICE):
            counts["candidates"] += len(p)
            counts["slices"] += 1
            if ordered is None:  # sizes and bitmaps in bucket order: a pair's look-ups fall close together
                ordered = lengths[in_order], bitmaps[:, in_order]
            keep = within_reach(*ordered, p, q, threshold)
            i, j = in_order[p[keep]], in_order[q[keep]]
            keep = first_shared_band(keys, band, i, j)
            i, j = i[keep], j[keep]
            counts["checked"] += len(i)
            sim = jaccard(docs, i, j)
            hit = sim >= threshold
            found_i.append(i[hit])
            found_j.append(j[hit])
            found_sim.append(sim[hit])
        if on_band:
            on_band()
    i, j, sim = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_sim)
    counts["verified"] = len(i)
    return i, j, sim, counts
