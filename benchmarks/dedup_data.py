"""Seeded persona-like texts with injected near-duplicates, and their exact ground truth.

Real personas share template words ("A ... who ... and ..."), so unrelated personas overlap a lot;
the generator reproduces that, plus "siblings" (same person, another hobby: Jaccard ~0.6-0.85, the
false-positive bait) and edited copies (exact, re-cased, one or two words changed).
"""

from __future__ import annotations

import math
import random

import numpy as np

ADJ = ("retired", "young", "ambitious", "semi-retired", "self-taught", "newly qualified", "veteran", "part-time",
       "freelance", "bilingual", "award-winning", "curious", "meticulous", "overworked", "enthusiastic", "shy")
JOBS = ("nurse", "electrician", "software engineer", "beekeeper", "translator", "physics teacher", "chef",
        "lawyer", "librarian", "bus driver", "marine biologist", "data analyst", "midwife", "carpenter",
        "pharmacist", "urban planner", "journalist", "farmer", "accountant", "firefighter", "architect",
        "social worker", "paramedic", "violinist", "game designer", "geologist", "baker", "pilot", "dentist",
        "historian", "plumber", "veterinarian", "economist", "photographer", "tailor", "zookeeper")
PLACES = ("in a rural clinic", "in a coastal town", "at a busy city hospital", "in a mountain village",
          "at a small startup", "in a university lab", "on an island ferry route", "at a regional newspaper",
          "in a community centre", "at a family-run bakery", "in a public library", "on a research vessel",
          "at a secondary school", "in a logistics warehouse", "at a wildlife reserve", "in a refugee camp")
VERBS = ("organises", "writes", "teaches", "repairs", "designs", "studies", "collects", "restores", "builds",
         "translates", "campaigns for", "volunteers at", "records", "maps", "analyses", "coaches")
THINGS = ("vaccination days", "short stories", "night classes", "vintage radios", "board games", "tide pools",
          "old maps", "folk songs", "solar panels", "sourdough recipes", "bird migration data", "court documents",
          "wheelchair ramps", "crossword puzzles", "local history walks", "open-source tools", "herb gardens",
          "chess tournaments", "river clean-ups", "podcast episodes", "train timetables", "stained glass")
FOR = ("for local families", "for elderly neighbours", "for teenagers", "for small farmers", "for new arrivals",
       "for hospital patients", "for fellow hobbyists", "for schoolchildren", "for tourists", "for charities")
HOBBIES = ("plays the cello in an amateur orchestra", "runs marathons", "keeps chickens", "paints watercolours",
           "brews cider", "climbs sea cliffs", "knits for charity", "reads Victorian novels", "sails dinghies",
           "grows chillies", "watches old westerns", "learns Japanese", "bakes bread at dawn", "fixes bicycles",
           "photographs owls", "writes poetry", "dances salsa", "builds model railways", "swims in cold lakes")
EXTRA = ("worries about climate change", "dreams of opening a cafe", "mentors apprentices",
         "cares for an ageing parent", "is saving for a sailing boat", "hates bureaucracy",
         "keeps a detailed diary", "speaks four languages", "recently moved abroad", "loves terrible puns")
TEMPLATES = (
    "A {adj} {job} from {town} {place} who {verb} {thing} on {topic} {for_} and {hobby}.",
    "An experienced {job} {place} near {town} who {verb} {thing} about {topic} {for_}, {hobby}, and {extra}.",
    "A {adj} {job} in {town} who {verb} {thing} on {topic} {for_} in spare time and {extra}.",
    "A {job} {place} of {town}, {adj} and busy, who reads about {topic}, {hobby} and {extra}.",
    "A {adj} {job} in {town} who {verb} {thing} about {topic}, {hobby} on weekends, and {extra}.",
)
SYLLABLES = ("ka", "lo", "mer", "vin", "ta", "sel", "dor", "ri", "an", "bu", "co", "fen", "gal", "hu", "is",
             "jo", "ker", "lum", "ny", "or", "pa", "qui", "ros", "sun", "tor", "ul", "ve", "wen", "xa", "yo", "zed")


def _words(rng: random.Random, count: int, syllables: int) -> tuple[str, ...]:
    """Made-up words: the long tail of names and topics that real personas carry."""
    # dict, not set: a set's order follows Python's per-process string hashing, and the corpus must
    # be the same in every process and run
    return tuple(dict.fromkeys("".join(rng.choice(SYLLABLES) for _ in range(syllables)) for _ in range(count)))


_LEXICON = random.Random(12345)
TOWNS = tuple(w.capitalize() for w in _words(_LEXICON, 5000, 3))
TOPICS = tuple(f"{a} {b}" for a, b in zip(_words(_LEXICON, 20000, 3), _words(_LEXICON, 20000, 4)))
SWAP_WORDS = ("quiet", "local", "busy", "former", "keen", "small", "old", "new", "famous", "modest")


def persona(rng: random.Random) -> tuple[str, dict]:
    parts = {"adj": rng.choice(ADJ), "job": rng.choice(JOBS), "place": rng.choice(PLACES),
             "verb": rng.choice(VERBS), "thing": rng.choice(THINGS), "for_": rng.choice(FOR),
             "hobby": rng.choice(HOBBIES), "extra": rng.choice(EXTRA),
             "town": rng.choice(TOWNS), "topic": rng.choice(TOPICS)}
    template = rng.choice(TEMPLATES)
    return template.format(**parts), {"template": template, **parts}


def edited(rng: random.Random, text: str, edits: int) -> str:
    words = text.split()
    for _ in range(edits):
        k = rng.randrange(len(words))
        action = rng.random()
        if action < 0.4:
            words[k] = rng.choice(SWAP_WORDS) + "ish"
        elif action < 0.7:
            words.insert(k, rng.choice(SWAP_WORDS))
        elif len(words) > 3:
            del words[k]
    return " ".join(words)


def corpus(n: int, seed: int = 0, dup_rate: float = 0.15) -> list[str]:
    """n texts; about dup_rate of them are edited copies of earlier ones, more are siblings."""
    rng = random.Random(seed)
    texts: list[str] = []
    parts: list[dict] = []
    for _ in range(n):
        r = rng.random()
        if texts and r < dup_rate:
            source = texts[rng.randrange(len(texts))]
            kind = rng.random()
            if kind < 0.2:
                text = source
            elif kind < 0.35:
                text = source.upper() if rng.random() < 0.5 else source.replace(",", "").replace(".", "!")
            elif kind < 0.75:
                text = edited(rng, source, 1)
            else:
                text = edited(rng, source, 2)
            texts.append(text)
            parts.append({})
        elif parts and r < dup_rate * 2:
            # a sibling: the same person with another hobby and extra
            k = rng.randrange(len(parts))
            base = parts[k] or persona(rng)[1]
            sibling = dict(base, hobby=rng.choice(HOBBIES), extra=rng.choice(EXTRA))
            texts.append(sibling["template"].format(**{k2: v for k2, v in sibling.items() if k2 != "template"}))
            parts.append(sibling)
        else:
            text, p = persona(rng)
            texts.append(text)
            parts.append(p)
    return texts


def vectors(n: int, dim: int = 64, seed: int = 0, dup_rate: float = 0.1) -> np.ndarray:
    """Unit vectors in loose topical clusters, about dup_rate of them perturbed copies of earlier ones
    (cosine ~0.85-0.99 to their source)."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(max(n // 500, 8), dim))
    v = topics[rng.integers(0, len(topics), n)] + rng.normal(scale=1.0, size=(n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    dups = np.flatnonzero(rng.random(n) < dup_rate)
    dups = dups[dups > 0]
    sources = (rng.random(len(dups)) * dups).astype(np.int64)  # an earlier row
    noise = rng.normal(size=(len(dups), dim)) * rng.uniform(0.05, 0.4, size=(len(dups), 1)) / math.sqrt(dim)
    v[dups] = v[sources] + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def exact_jaccard_pairs(token_sets: list[set[str]], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with Jaccard >= threshold, exactly, by prefix filtering: order words
    rarest first; two sets with Jaccard >= t share a word among the first |A| - ceil(t|A|) + 1 of each."""
    freq: dict[str, int] = {}
    for s in token_sets:
        for w in s:
            freq[w] = freq.get(w, 0) + 1
    rank = {w: k for k, w in enumerate(sorted(freq, key=lambda w: (freq[w], w)))}
    ordered = [sorted(rank[w] for w in s) for s in token_sets]
    index: dict[int, list[int]] = {}
    pairs: dict[tuple[int, int], float] = {}
    for j, words in enumerate(ordered):
        size = len(words)
        if size == 0:
            continue
        prefix = size - math.ceil(threshold * size - 1e-9) + 1
        seen: set[int] = set()
        for w in words[:prefix]:
            for i in index.get(w, ()):
                if i in seen:
                    continue
                seen.add(i)
                a, b = token_sets[i], token_sets[j]
                inter = len(a & b)
                sim = inter / (len(a) + len(b) - inter)
                if sim >= threshold:
                    pairs[(i, j)] = sim
            index.setdefault(w, []).append(j)
    return pairs


ROLES = ("nurse", "teacher", "farmer", "baker", "pilot", "lawyer", "plumber", "chef", "miner", "tailor",
         "painter", "sailor", "clerk")
SMALL_VOCABULARY = ("who", "likes", "quiet", "busy", "old", "new", "city", "village", "books", "music",
                    "dogs", "gardens", "early", "late", "work", "home", "friends", "family", "long", "walks")


def repetitive(n: int, seed: int = 0, dup_rate: float = 0.1) -> list[str]:
    """The cliff case: personas from 13 roles and a 20-word vocabulary (about 12 words of it each), so
    any two share most of their words and nearly every pair meets in some LSH band; about dup_rate of
    them are an earlier one with a word added or removed (Jaccard >= 0.9 when the set is long enough)."""
    rng = random.Random(seed)
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < dup_rate:
            words = rng.choice(texts).split()
            if rng.random() < 0.5 and len(words) > 3:
                del words[rng.randrange(2, len(words))]
            else:
                words.insert(rng.randrange(2, len(words) + 1), rng.choice(SMALL_VOCABULARY))
            texts.append(" ".join(words))
        else:
            chosen = rng.sample(SMALL_VOCABULARY, rng.randint(9, 15))
            texts.append(f"a {rng.choice(ROLES)} " + " ".join(chosen))
    return texts


def exact_jaccard_pairs_by_bitmask(token_sets: list[set[str]], threshold: float, block: int = 2048) -> dict[tuple[int, int], float]:
    """Every pair (i < j) with Jaccard >= threshold, exactly, for a vocabulary of at most 64 words
    (the repetitive corpus, where prefix filtering compares nearly every pair anyway): each set a
    64-bit mask, all pairs by popcount, a block of rows at a time."""
    vocabulary = sorted(set().union(*token_sets))
    if len(vocabulary) > 64:
        raise ValueError(f"{len(vocabulary)} words: bitmasks hold 64")
    bit = {w: np.uint64(1) << np.uint64(k) for k, w in enumerate(vocabulary)}
    masks = np.array([sum(bit[w] for w in s) if s else np.uint64(0) for s in token_sets], dtype=np.uint64)
    sizes = np.bitwise_count(masks).astype(np.int64)
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(masks), block):
        rows = masks[start : start + block]
        inter = np.bitwise_count(rows[:, None] & masks[None, :]).astype(np.int64)
        union = sizes[start : start + block, None] + sizes[None, :] - inter
        sim = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
        i, j = np.nonzero(sim >= threshold)
        i += start
        keep = i < j
        for a, b in zip(i[keep].tolist(), j[keep].tolist()):
            pairs[(a, b)] = float(sim[a - start, b])
    return pairs
