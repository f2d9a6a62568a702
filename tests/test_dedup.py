"""Deduplication in the core: ``personahub dedup`` (the chain the installed deduplicators declare), the
buckets of embedding comparisons and the sqlite-vec index of ``personahub personas search``. Each
deduplicator's own tests are in its plugin (plugins/{quality,minhash,embedding}/tests). Small crafted
data; no timing assertions."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

import numpy as np

from personahub_core.dedup import keep_earliest
from personahub_core.testing import cli, import_texts, last_json, run_task
from personahub_core.vector_search import index_path, similar_pairs, train_buckets

DB = "personahub.duckdb"
NURSE = "a pediatric nurse in a rural clinic who organises vaccination days for local families"
NURSE_REWORDED = "a pediatric nurse at a rural clinic who plans vaccination days for local families"
OTHERS = ["a retired railway signal engineer who restores old lever frames as a hobby",
          "a junior rust developer learning async programming for a logistics startup",
          "a beekeeper who sells heather honey at a weekly farmers market"]

def test_keep_earliest_drops_a_document_only_for_a_kept_partner():
    # 0~1 and 1~2 but 0 and 2 apart: 1 goes (to 0), 2 stays; 3 matches 0 and 2, goes to the more similar.
    i, j = np.array([0, 1, 0, 2]), np.array([1, 2, 3, 3])
    duplicate_of, best = keep_earliest(4, i, j, np.array([0.95, 0.97, 0.91, 0.93]))
    assert duplicate_of.tolist() == [-1, 0, -1, 2] and best[3] == np.float64(0.93)


def test_empty_store_is_a_no_op_with_a_message():
    out = cli("dedup", "--backend", "fake", "--json", check=True)
    summary = last_json(out)
    assert [s["task"] for s in summary["steps"]] == ["quality", "minhash", "embedding"]  # the declared order
    assert summary["personas"] == 0 and all(s["items_done"] == 0 for s in summary["steps"])
    assert all(any("no personas" in n for n in s["notes"]) for s in summary["steps"])


@pytest.mark.slow
def test_bad_options_are_one_line_errors():
    out = cli("dedup", "--skip", "nothing")
    assert out.returncode == 2 and "--skip nothing: expected one of quality, minhash, embedding" in out.stderr
    out = cli("dedup", "--jaccard", "1.5")
    assert out.returncode == 2 and "dedup minhash" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_jaccard_cosine_and_threshold_reach_the_steps_that_declare_that_measure(personas_file):
    run_task("import", ["--input", str(personas_file)])
    cli("dedup", "--backend", "fake", "--jaccard", "0.8", "--cosine", "0.95", "-q", check=True)
    cli("dedup", "--backend", "fake", "--threshold", "0.85", "--skip", "quality", "-q", check=True)
    from personahub_core.store import Store

    with Store(DB, read_only=True) as store:
        options = store.query("SELECT task, options->>'threshold' FROM runs WHERE task <> 'import' ORDER BY started_at, task")
    assert options == [("quality", None), ("minhash", "0.8"), ("embedding", "0.95"), ("minhash", "0.85"),
                       ("embedding", "0.85")]


def test_bucketed_pairs_equal_brute_force_when_every_bucket_is_probed_and_never_invent_pairs():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(600, 16)).astype(np.float32)
    v[300:] = v[:300] + rng.normal(scale=0.15, size=(300, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = v @ v.T
    bi, bj = np.nonzero(np.triu(sims >= 0.9, k=1))
    truth = set(zip(bi.tolist(), bj.tolist()))
    centroids = train_buckets(v, 12)
    i, j, s = similar_pairs(v, 0, centroids, probes=12, threshold=0.9)
    assert set(zip(i.tolist(), j.tolist())) == truth
    assert np.allclose(s, sims[i, j], atol=1e-5)
    i2, j2, _ = similar_pairs(v, 0, centroids, probes=2, threshold=0.9)
    assert set(zip(i2.tolist(), j2.tolist())) <= truth


@pytest.mark.slow
def test_search_returns_the_closest_persona_first_and_the_index_is_rebuildable():
    import_texts(OTHERS + [NURSE])
    out = cli("personas", "search", "pediatric nurse vaccination clinic", "--backend", "fake", "--json", check=True)
    hits = json.loads(out.stdout)
    assert hits[0]["persona"] == NURSE and hits[0]["similarity"] > hits[1]["similarity"]
    path = index_path(Path(DB))
    assert path.exists()
    path.unlink()
    again = json.loads(cli("personas", "search", "pediatric nurse vaccination clinic", "--backend", "fake",
                           "--json", check=True).stdout)
    assert path.exists() and again == hits


@pytest.mark.slow
def test_search_leaves_out_marked_personas():
    import_texts([NURSE] + OTHERS + [NURSE_REWORDED])
    cli("dedup", "--backend", "fake", check=True)
    hits = json.loads(cli("personas", "search", NURSE_REWORDED, "--backend", "fake", "--json", "--k", "10",
                          check=True).stdout)
    assert NURSE_REWORDED not in [h["persona"] for h in hits] and hits[0]["persona"] == NURSE
