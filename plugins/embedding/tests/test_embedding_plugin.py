"""The embedding deduplicator: it marks near-duplicates MinHash keeps (cosine on the shipped sentence
model's vectors, at that model's calibrated threshold, recorded with the marks), keeps its vectors in
the store, a later run compares only new personas, and vectors that do not separate the calibration
set are not marked with."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from personahub_core.backends.fake import FakeBackend
from personahub_core.calibration import SHIPPED
from personahub_core.embedders import SHIPPED_MODEL, shipped_embedder
from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.store import Store
from personahub_core.testing import cli, dedup_marks, import_texts, kept_personas, last_json, plugins_registered, run_task
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
    u, v = shipped_embedder().embed([a, b])
    return float(u @ v)


THRESHOLD = SHIPPED[SHIPPED_MODEL].threshold


@pytest.mark.slow  # two runs of the command, each loading the embedding model
def test_embedding_dedup_marks_what_minhash_keeps():
    assert jac(NURSE, NURSE_REWORDED) < 0.9 and cosine(NURSE, NURSE_REWORDED) >= THRESHOLD
    assert all(cosine(NURSE, other) < THRESHOLD for other in OTHERS)
    import_texts([NURSE] + OTHERS + [NURSE_REWORDED])
    out = cli("dedup", "--backend", "fake", "--json", check=True)
    steps = {s["task"]: s for s in last_json(out)["steps"]}
    assert steps["minhash"]["marked"] == 0 and steps["embedding"]["marked"] == 1
    m = dedup_marks("embedding")
    assert list(m) == [NURSE_REWORDED] and m[NURSE_REWORDED]["similarity"] >= THRESHOLD
    with Store(DB, read_only=True) as store:
        assert store.query("SELECT DISTINCT model FROM embeddings") == [(SHIPPED_MODEL,)]
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


def run_options(task: str = "embedding") -> list[dict]:
    with Store(DB, read_only=True) as store:
        return [json.loads(r[0]) for r in store.query("SELECT options FROM runs WHERE task = ? ORDER BY started_at", [task])]


@pytest.mark.slow  # three runs of the command
def test_the_calibrated_threshold_is_shown_in_help_and_stored_with_the_marks():
    help_text = cli("dedup", "--help", env={"COLUMNS": "200"}, check=True).stdout
    assert "--embedding-threshold" in help_text and f"{THRESHOLD} for {SHIPPED_MODEL}" in help_text
    import_texts([NURSE] + OTHERS + [NURSE_REWORDED])
    cli("dedup", "-q", check=True)
    assert dedup_marks("embedding")[NURSE_REWORDED]["reason"].endswith(f">= {THRESHOLD} (calibrated for {SHIPPED_MODEL})")
    options = run_options()[-1]
    assert (options["threshold"], options["threshold_source"], options["embedding_model"]) == (THRESHOLD, "calibrated", SHIPPED_MODEL)
    # Overridden: the given threshold is the one used and recorded.
    cli("dedup", "--fresh", "--skip", "quality", "--skip", "minhash", "--embedding-threshold", "0.99", "-q", check=True)
    assert dedup_marks("embedding") == {}
    assert (run_options()[-1]["threshold"], run_options()[-1]["threshold_source"]) == (0.99, "given")


class Anisotropic(FakeBackend):
    """A deliberately bad embedder: every vector mostly one shared direction plus hashed noise, as a
    generation model's mean-pooled states are (distinct texts land at cosine ~0.9 and above)."""

    name = "anisotropic"

    def embed(self, texts):
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return [(np.ones(64) + 0.1 * np.random.default_rng(s).normal(size=64)).tolist() for s in seeds]


class AnisotropicPlugin:
    @staticmethod
    @hookimpl
    def register_backends(register):
        register(Anisotropic)


def test_poorly_separated_vectors_are_not_marked_with_unless_a_threshold_is_given():
    import_texts([NURSE] + OTHERS + [NURSE_REWORDED])
    with plugins_registered(AnisotropicPlugin()):
        with pytest.raises(UsageError, match="vectors poorly separated: anisotropic:bag on the calibration set"):
            run_task("embedding", backend="anisotropic", embedding_model="bag")
        assert dedup_marks("embedding") == {}
        with Store(DB, read_only=True) as store:  # calibrated once, kept in the store
            assert store.query("SELECT model FROM embedding_calibrations") == [("anisotropic:bag",)]
        result = run_task("embedding", ["--threshold", "0.999"], backend="anisotropic", embedding_model="bag")
        assert any("vectors poorly separated" in note for note in result["notes"])
        with Store(DB, read_only=True) as store:
            assert store.scalar("SELECT count(*) FROM embedding_calibrations") == 1  # not calibrated again


@pytest.mark.model
@pytest.mark.slow
def test_a_gguf_embedding_model_is_run_by_llama_cpp_at_a_given_threshold():
    from personahub_core.models import default_model_path

    gguf = default_model_path()
    import_texts([NURSE] + OTHERS)
    run_task("embedding", ["--threshold", "0.999"], embedding_model=str(gguf))
    with Store(DB, read_only=True) as store:  # pooled by llama.cpp (mean: a generation model declares none)
        assert store.query("SELECT DISTINCT model, dim FROM embeddings") == [(f"llama-cpp:{gguf.stem}", 640)]
    assert (run_options()[-1]["threshold"], run_options()[-1]["threshold_source"]) == (0.999, "given")
