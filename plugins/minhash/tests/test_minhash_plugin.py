"""The minhash deduplicator: exact Jaccard behind LSH, keep-earliest over chains, incremental runs that
hash only new personas, its signatures table, and awkward texts. Small crafted data; no timing assertions."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from personahub_core.store import Store
from personahub_core.testing import cli, dedup_marks, import_texts, kept_personas, run_task
import personahub_minhash
from personahub_minhash import MIGRATIONS, engine

DB = "personahub.duckdb"
WORDS = [f"w{k}" for k in range(20)]
BASE = " ".join(WORDS)  # 20 distinct words


def jac(a: str, b: str) -> float:
    x, y = engine.shingles(a, 1), engine.shingles(b, 1)
    return len(x & y) / len(x | y)


def replace(text: str, old: str, new: str) -> str:
    return " ".join(new if w == old else w for w in text.split())


def test_exact_and_near_duplicates_are_marked_just_above_but_not_below_the_threshold():
    one_word = replace(BASE, "w19", "x1")  # Jaccard 19/21 = 0.905
    two_words = replace(one_word, "w18", "x2")  # 18/22 = 0.818
    exactly = " ".join(WORDS[:9] + ["x3"]), " ".join(WORDS[:9])  # 9/10 = 0.9, at the threshold
    texts = [BASE, BASE, BASE.upper() + "!", one_word, two_words, exactly[0], exactly[1]]
    assert jac(BASE, one_word) > 0.9 > jac(BASE, two_words) and jac(*exactly) == 0.9
    import_texts(texts)
    result = run_task("minhash")
    assert result["items_done"] == 7
    m = dedup_marks("minhash")
    assert set(m) == {BASE, BASE.upper() + "!", one_word, exactly[1]}  # BASE: its second copy
    with Store(DB, read_only=True) as store:
        copies = store.query("SELECT count(*) FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                             "WHERE p.persona = ?", [BASE])[0][0]
        first = store.query("SELECT id FROM personas WHERE persona = ? ORDER BY seq LIMIT 1", [BASE])[0][0]
    assert copies == 1  # the later copy of BASE; the earliest is kept
    assert m[one_word]["duplicate_of"] == first and m[one_word]["similarity"] == pytest.approx(19 / 21, abs=1e-6)
    assert m[exactly[1]]["similarity"] == pytest.approx(0.9)
    assert two_words in kept_personas()


def test_chains_keep_the_end_that_has_no_kept_partner():
    a = BASE
    b = replace(a, "w19", "x1")
    c = replace(b, "w18", "x2")
    assert jac(a, b) >= 0.9 and jac(b, c) >= 0.9 and jac(a, c) < 0.9
    import_texts([a, b, c])
    run_task("minhash")
    m = dedup_marks("minhash")
    assert set(m) == {b}  # C matched only B, which is dropped, so C stays
    assert kept_personas() == [a, c]
    assert m[b]["cluster_id"] == m[b]["duplicate_of"]  # A, B and C form one cluster headed by A


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_dropped_persona_has_a_kept_partner_and_no_kept_pair_is_left(seed):
    """Property over random template-like data: the greedy rule's guarantee, and recall 1.0."""
    rng = random.Random(seed)
    vocab = [f"v{k}" for k in range(60)]
    texts: list[str] = []
    for _ in range(300):
        if texts and rng.random() < 0.5:  # an edit of an earlier text: chains and clusters
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 2)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.sample(vocab, rng.randint(8, 20))))
    import_texts(texts)
    run_task("minhash")
    with Store(DB, read_only=True) as store:
        rows = store.query("SELECT p.id, p.persona, m.duplicate_of, m.similarity FROM personas p "
                           "LEFT JOIN dedup_marks m ON m.persona_id = p.id ORDER BY p.seq")
    text_of = {r[0]: r[1] for r in rows}
    dropped = {r[0]: (r[2], r[3]) for r in rows if r[2] is not None}
    assert dropped, "the data must contain duplicates"
    for pid, (partner, sim) in dropped.items():
        assert partner not in dropped
        assert jac(text_of[pid], text_of[partner]) == pytest.approx(sim) and sim >= 0.9
    kept = [r[0] for r in rows if r[0] not in dropped]
    for k, pid in enumerate(kept):
        for earlier in kept[:k]:
            assert jac(text_of[pid], text_of[earlier]) < 0.9


def template_personas(count: int, seed: int) -> list[str]:
    """Persona-like texts: shared template words, a few varying ones, and edited copies of earlier
    texts (one or two words changed), so there are many band matches and chains of near-duplicates."""
    rng = random.Random(seed)
    template = "a person from the town who works at the place and likes to spend weekends".split()
    pool = [f"w{k}" for k in range(80)]
    texts: list[str] = []
    for _ in range(count):
        if texts and rng.random() < 0.4:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(1, 2)):
                words[rng.randrange(len(words))] = rng.choice(pool)
        else:
            words = template + rng.sample(pool, rng.randint(4, 12))
        texts.append(" ".join(words))
    return texts


def expected_marks(texts: list[str], threshold: float = 0.9) -> dict[str, str]:
    """Keep-earliest by brute force: a text is dropped for its most similar kept earlier text at
    or above the threshold (ties: the earliest). Dropped text -> that partner's text."""
    sets = [engine.shingles(t, 1) for t in texts]
    kept: list[int] = []
    dropped: dict[str, str] = {}
    for k, words in enumerate(sets):
        best, partner = 0.0, None
        for e in kept:
            sim = len(words & sets[e]) / len(words | sets[e])
            if sim >= threshold and sim > best:
                best, partner = sim, e
        if partner is None:
            kept.append(k)
        else:
            dropped[texts[k]] = texts[partner]
    return dropped


def test_sliced_candidate_pairs_find_what_brute_force_finds_across_runs(monkeypatch):
    """Candidates made and verified a few dozen at a time (many slices per band), in two runs:
    the second checks new personas against the kept ones. Same marks as brute force."""
    monkeypatch.setattr(engine, "PAIRS_PER_SLICE", 40)
    # Personas, signatures and kept texts read in batches of 64 too, while signatures are written.
    monkeypatch.setattr(personahub_minhash, "CHUNK", 64)
    monkeypatch.setattr(personahub_minhash.MinHashDeduplicator, "batch_rows", 64)
    texts = list(dict.fromkeys(template_personas(400, seed=5)))  # distinct texts: marks are keyed by text
    results = []
    for part in (texts[:200], texts[200:]):
        with Store(DB) as store:  # one INSERT from Arrow: row-by-row inserts would take most of the test
            store.add_personas(pa.table({"id": [f"t{len(results)}-{k:03d}" for k in range(len(part))], "persona": part,
                                         "origin": ["import"] * len(part)}))
        results.append(run_task("minhash"))
    for result in results:
        slices = int(re.search(r"in (\d+) slices", result["notes"][-1])[1])
        assert slices > 3 * 21, result["notes"][-1]  # several slices in a band, not one per band
    with Store(DB, read_only=True) as store:
        found = dict(store.query("SELECT p.persona, d.persona FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                                 "JOIN personas d ON d.id = m.duplicate_of"))
    want = expected_marks(texts)
    assert len(want) > 40
    assert found == want


def test_size_and_bitmap_bounds_never_rule_out_a_pair_at_the_threshold():
    rng = random.Random(3)
    base = [f"t{k}" for k in range(30)]
    texts = []
    for _ in range(300):
        words = set(rng.sample(base, rng.randint(5, 25)))
        texts.append(" ".join(words))
        texts.append(" ".join(words | {f"x{rng.randrange(5)}"}))  # near copies: Jaccard >= 0.8
    vocab = engine.Vocabulary()
    docs = vocab.tokenise(texts)
    bitmaps = engine.word_bitmaps(docs, vocab.hashes)
    i, j = np.triu_indices(len(texts), k=1)
    sim = engine.jaccard(docs, i, j)
    for threshold in (0.5, 0.8, 0.9, 0.95):
        reach = engine.within_reach(docs.lengths, bitmaps, i, j, threshold)
        assert reach[sim >= threshold].all()
        assert not reach[sim < threshold / 2].any() or threshold == 0.5
        assert (~reach).sum() > 0.5 * (sim < threshold).sum()  # the bounds do rule most pairs out


def test_word_sets_match_the_word_regex_on_unicode_text_and_unspaced_scripts():
    rng = random.Random(0)
    alphabet = list("abcXYZ_09 .,;:!?'-\t\n") + ["é", "ß", "İ", "Σ", "’", "—", "\u00a0", "\u2003", "日本", "٣", "½",
                                                   "²", "\u0307", "\x1e", "\x00", "ﬁ", "Ⅻ", "\U0001F600",
                                                   "护士", "の", "カ", "ー", "。", "ครู", "่", "ສ", "ក", "\U00020000"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(500)]
    vocab = engine.Vocabulary()
    docs = vocab.tokenise(texts)
    word = {i: w for w, i in vocab.ids.items()}
    for k, text in enumerate(texts):
        found = {word[i] for i in docs.flat[docs.offsets[k] : docs.offsets[k + 1]].tolist()}
        assert found == engine.shingles(text.replace("\x00", " "), 1), repr(text)


def test_incremental_run_hashes_only_new_personas(monkeypatch):
    first = [BASE, " ".join(f"u{k}" for k in range(20))]
    import_texts(first, "a.jsonl")
    run_task("minhash")
    near = replace(BASE, "w0", "x0")
    import_texts([near, "a brand new persona who writes about nothing in particular"], "b.jsonl")
    tokenised: list[str] = []
    original = engine.Vocabulary.tokenise

    def spy(self, texts):
        tokenised.extend(texts)
        return original(self, texts)

    monkeypatch.setattr(engine.Vocabulary, "tokenise", spy)
    result = run_task("minhash")
    assert result["items_done"] == 2
    # The new ones, plus BASE read back only for the exact check of its candidate pair.
    assert sorted(tokenised) == sorted([near, "a brand new persona who writes about nothing in particular", BASE])
    with Store(DB, read_only=True) as store:  # the file's id is kept as source_id
        base_id = store.scalar("SELECT id FROM personas WHERE source_id = 'p00000-a.jsonl'")
    assert dedup_marks("minhash")[near]["duplicate_of"] == base_id
    assert run_task("minhash")["items_done"] == 0


@pytest.mark.slow
def test_marks_not_deletes_and_export_leaves_them_out_unless_all():
    texts = [BASE, BASE + " !", "a completely different persona about beekeeping and honey"]
    import_texts(texts)
    cli("run", "--plugin", "minhash", "--json", check=True)
    with Store(DB, read_only=True) as store:
        assert store.count("personas") == 3
    cli("export", "personas", "--format", "jsonl", "--out", "kept.jsonl", check=True)
    cli("export", "personas", "--format", "jsonl", "--out", "all.jsonl", "--all", check=True)
    kept = [json.loads(line)["persona"] for line in Path("kept.jsonl").read_text().splitlines()]
    everything = [json.loads(line)["persona"] for line in Path("all.jsonl").read_text().splitlines()]
    assert kept == [texts[0], texts[2]]
    assert everything == texts


def test_awkward_texts_are_handled_and_reported():
    long_text = " ".join(f"long{k}" for k in range(3000))
    long_copy = long_text.replace("long7 ", "changed7 ")
    texts = ["", "   ", "?!", "A nurse \ufffd\ufffd who lost bytes somewhere in a bad decode.",
             long_text, long_copy, "Ünïcödé persona: a café owner in Zürich who roasts coffee beans.", "..."]
    with Store(DB) as store:  # straight into the store: import would skip the empty ones
        store.insert_personas([{"id": f"x{k}", "persona": t, "origin": "import"} for k, t in enumerate(texts)])
    result = run_task("minhash")
    assert any("4 personas have no words" in n for n in result["notes"])  # the last one too
    assert set(dedup_marks("minhash")) == {long_copy}  # a 3000-word text is hashed in blocks, its copy found
    run_task("quality")
    q = dedup_marks("quality")
    assert q[""]["reason"] == "empty" and q["   "]["reason"] == "empty" and q["?!"]["reason"] == "no words"
    assert q[texts[3]]["reason"].startswith("broken characters")
    assert q[long_text]["reason"].startswith("too long")
    assert texts[6] in kept_personas()


def test_engine_signatures_match_a_direct_minimum():
    vocab = engine.Vocabulary()
    docs = vocab.tokenise(["a b c", "c d", "", " ".join(f"t{k}" for k in range(2000))])
    hasher = engine.MinHasher(32)
    sig = hasher.signatures(docs, vocab.hashes)
    for d in (0, 1, 3):
        ids = docs.flat[docs.offsets[d] : docs.offsets[d + 1]]
        assert (sig[d] == hasher.hash_words(vocab.hashes[ids]).min(axis=0)).all()
    assert (sig[2] == np.iinfo(np.uint32).max).all()


def test_bad_options_are_one_line_errors():
    out = cli("run", "--plugin", "minhash", "--bands", "20", "--rows", "8")
    assert out.returncode == 2 and "exceeds num-perm" in out.stderr and "Traceback" not in out.stderr


def test_empty_store_is_a_no_op_with_a_message():
    result = run_task("minhash")
    assert result["items_done"] == 0 and any("no personas" in n for n in result["notes"])


def test_fresh_forgets_marks_checks_and_signatures_then_finds_the_same(tmp_path):
    import_texts([BASE, BASE + " !", "a completely different persona about beekeeping and honey"])
    first = run_task("minhash")
    again = run_task("minhash", ["--fresh"])
    assert first["items_done"] == again["items_done"] == 3
    assert set(dedup_marks("minhash")) == {BASE + " !"}
    with Store(DB, read_only=True) as store:
        assert store.count("minhash_signatures") == 3  # the old ones dropped, not doubled
        assert store.count("dedup_checked") == 3


def test_signatures_of_an_interrupted_run_are_made_again():
    """A run killed after storing signatures but before its checks left signatures of unchecked
    personas: the next run drops and redoes them, never doubling a persona's signature."""
    import_texts([BASE, replace(BASE, "w0", "x0")])
    with Store(DB) as store:
        store.migrate_plugin("minhash", MIGRATIONS)
        store.append("minhash_signatures", pa.table({"persona_id": store.select_personas().column("id"),
                                                     "signature": [b"stale", b"stale"]}),
                     constants={"num_perm": 128, "ngram": 1})
    assert run_task("minhash")["items_done"] == 2
    with Store(DB, read_only=True) as store:
        assert store.count("minhash_signatures") == 2
        assert store.scalar("SELECT count(*) FROM minhash_signatures WHERE signature = 'stale'::BLOB") == 0
    assert len(dedup_marks("minhash")) == 1


def test_personas_in_unspaced_scripts_are_compared_word_by_word():
    """A whole Chinese or Thai sentence used to be one "word": an edit made it a different set (no
    duplicate found), and two personas shared nothing. Ideographs are words, Thai gives letter pairs."""
    from personahub_core.sample_data import multilingual_personas_path

    personas = [json.loads(line)["persona"] for line in multilingual_personas_path().read_text("utf-8").splitlines()]
    zh, ja, th = personas[0], personas[3], personas[6]
    edits = [zh.replace("十二年", "十三年"), ja.replace("休日は", "休日には"), th.replace("ที่เชียงใหม่", "ในเชียงใหม่")]
    for original, edited in zip((zh, ja, th), edits):
        assert edited != original and jac(original, edited) >= 0.9
    import_texts(personas + edits)
    run_task("minhash")
    assert set(dedup_marks("minhash")) == set(edits)  # the eight distinct personas are all kept


def test_one_word_edit_pairs_are_every_short_pair_that_can_reach_the_threshold():
    rng = random.Random(7)
    vocab = [f"v{k}" for k in range(12)]
    texts = [" ".join(rng.sample(vocab, rng.randint(1, 12))) for _ in range(400)]
    vocabulary = engine.Vocabulary()
    docs = vocabulary.tokenise(texts)
    sets = [engine.shingles(t, 1) for t in texts]
    first_new = 150  # 0..149 count as kept: their pairs among themselves are settled
    i, j = engine.one_word_edit_pairs(docs, vocabulary.hashes, np.arange(len(texts)), first_new, 8, 9)
    found = set(zip(i.tolist(), j.tolist()))
    want = {(a, b) for b in range(first_new, len(texts)) for a in range(b)
            if min(len(sets[a]), len(sets[b])) <= 8 and max(len(sets[a]), len(sets[b])) <= 9
            and len(sets[a] ^ sets[b]) <= 1}
    assert len(want) > 50 and found == want
    assert engine.one_word_reach(0.9) == 17 and engine.one_word_reach(0.8) == 7 and engine.one_word_reach(0.5) == 1


@pytest.mark.slow
def test_short_personas_from_a_small_vocabulary_do_not_pair_everything():
    """The cliff: 13 roles and 20 words, so nearly every pair shares a band key. Same marks as brute
    force, from a number of comparisons that grows with the personas, not with their pairs."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import dedup_data

    texts = list(dict.fromkeys(dedup_data.repetitive(1500, seed=3)))
    import_texts(texts)
    result = run_task("minhash")
    band_matches = int(re.search(r"(\d+) band matches", result["notes"][-1])[1])
    assert band_matches < 10 * len(texts), result["notes"][-1]  # all pairs in the bands: ~ 10^6
    want = expected_marks(texts)
    assert len(want) > 50
    with Store(DB, read_only=True) as store:
        found = dict(store.query("SELECT p.persona, d.persona FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                                 "JOIN personas d ON d.id = m.duplicate_of"))
    assert found == want
