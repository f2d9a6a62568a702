"""The embedding deduplicator with the fake backend: it marks near-duplicates MinHash keeps (cosine on
the backend's vectors), keeps its vectors in the store, and a later run compares only new personas."""

from __future__ import annotations

import numpy as np

from personahub_core.store import Store
from personahub_core.testing import (FakeBackend, cli, dedup_marks, import_texts, kept_personas, last_json,
                                     run_task)
from personahub_minhash import engine

DB = "personahub.duckdb"
NURSE = "a pediatric nurse in a rural clinic who organises vaccination days for local families"
NURSE_REWORDED = "a pediatric nurse at a rural clinic who plans vaccination days for local families"
OTHERS = ["a retired railway signal engineer who restores old lever frames as a hobby",
          "a junior rust developer learning async programming for a logistics startup",
          "a beekeeper who sells heather honey at a weekly farmers market"]


def jac(a: str, b: str) -> float:
    x, y = engine.shingles(a, 1), engine.shingles(b, 1)
    return len(x & y) / len(x | y)


def cosine(a: str, b: str) -> float:
    u, v = np.array(FakeBackend().embed([a, b]))
    return float(u @ v)


def test_embedding_dedup_marks_what_minhash_keeps():
    assert jac(NURSE, NURSE_REWORDED) < 0.9 <= cosine(NURSE, NURSE_REWORDED)
    import_texts([NURSE] + OTHERS + [NURSE_REWORDED])
    out = cli("dedup", "--backend", "fake", "--json", check=True)
    steps = {s["task"]: s for s in last_json(out)["steps"]}
    assert steps["minhash"]["marked"] == 0 and steps["embedding"]["marked"] == 1
    m = dedup_marks("embedding")
    assert list(m) == [NURSE_REWORDED] and m[NURSE_REWORDED]["similarity"] >= 0.9
    with Store(DB, read_only=True) as store:
        assert store.query("SELECT DISTINCT model FROM embeddings") == [("fake:fake",)]
    assert cli("dedup", "--backend", "fake", "--json", check=True).returncode == 0  # nothing new
    assert set(kept_personas()) == {NURSE, *OTHERS}


def test_a_later_run_embeds_and_compares_only_the_new_personas():
    import_texts([NURSE] + OTHERS, "a.jsonl")
    assert run_task("embedding", backend="fake")["items_done"] == 4
    import_texts([NURSE_REWORDED], "b.jsonl")
    second = run_task("embedding", backend="fake")
    assert second["items_done"] == 1 and list(dedup_marks("embedding")) == [NURSE_REWORDED]
    with Store(DB, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM embeddings") == 5  # each persona embedded once
    assert run_task("embedding", backend="fake")["items_done"] == 0
