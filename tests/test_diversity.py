"""``personahub diversity``: persona pairs binned by similarity against their outputs' similarity, the
persona set's own spread, and outputs with personas against a no-persona baseline."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from personahub_core.diversity import distinct_n, output_spread, persona_set, run_study
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import cli, last_json, write_jsonl

ROLES = ["nurse", "teacher", "beekeeper", "engineer", "translator", "farmer", "pilot", "chef"]
PLACES = ["rural clinic", "city school", "mountain village", "harbour town", "river valley"]
HOBBIES = ["chess", "gardening", "cycling", "pottery", "astronomy", "birdwatching"]
TEMPLATE = {"a", "from", "who", "loves", "on", "weekends"}
BASELINE_PROBLEM = "A shop sells 12 pencils a day. How many pencils does it sell in 7 days?"


def problem_for(request) -> str:
    """A math problem built from the persona's words (so similar personas get similar problems);
    the same problem for every prompt without a persona."""
    lines = request.completion.rstrip().split("\n")
    if len(lines) < 2 or not lines[-2].startswith("Persona: "):
        return BASELINE_PROBLEM
    words = [w for w in lines[-2][len("Persona: "):].lower().split() if w not in TEMPLATE]
    return "How many letters are there in " + " ".join(reversed(words)) + "?"


@pytest.fixture
def db(tmp_path):
    """30 personas sharing a role, a place or a hobby with each other, and a math problem for each."""
    rng = random.Random(7)
    combos = rng.sample([(r, p, h) for r in ROLES for p in PLACES for h in HOBBIES], 30)
    personas = [f"A {r} from a {p} who loves {h} on weekends" for r, p, h in combos]
    path = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in personas]))], db=path)
    FakeBackend.responder = problem_for
    assert run_task("math", db=path, backend="fake")["items_done"] == 30
    return path


def stored_pairs(db, task: str = "math"):
    """Persona and output vectors of the task's rows, read back independently of the study."""
    with Store(db, read_only=True) as store:
        rows = store.query(
            "SELECT e.vector, o.vector FROM generations g JOIN embeddings e ON e.persona_id = g.input_id "
            "JOIN output_embeddings o ON o.generation_key = g.key WHERE g.task = ? AND g.status = 'ok'", [task])
    as_matrix = lambda blobs: np.stack([np.frombuffer(b, "<f4") for b in blobs])  # noqa: E731
    return as_matrix([r[0] for r in rows]), as_matrix([r[1] for r in rows])


def test_bins_count_every_pair_in_range_and_average_their_outputs(db):
    result = last_json(cli("diversity", "--task", "math", "--backend", "fake", "--db", db, "--json",
                           "--bins", "0.4,0.6,0.8,0.9,-0.9", check=True))
    assert result["task"] == "math" and result["rows"] == 30
    personas, outputs = stored_pairs(db)
    assert len(personas) == 30
    p_sims, o_sims = personas @ personas.T, outputs @ outputs.T
    i, j = np.triu_indices(30, 1)
    assert [b["persona_similarity"] for b in result["bins"]] == [0.4, 0.6, 0.8, 0.9, -0.9]
    for b in result["bins"]:
        inside = np.abs(p_sims[i, j] - b["persona_similarity"]) <= 0.05 + 1e-9
        assert b["pairs"] == int(inside.sum())
        if b["pairs"]:
            expected = o_sims[i, j][inside]
            assert b["output_similarity"]["mean"] == pytest.approx(expected.mean(), abs=1e-4)
            assert b["output_similarity"]["std"] == pytest.approx(expected.std(), abs=1e-4)
            assert -1 <= b["output_similarity"]["mean"] <= 1
        else:
            assert b["output_similarity"] == {"mean": None, "std": None}
    filled = [b for b in result["bins"] if b["pairs"]]
    assert len(filled) >= 3  # the fixture's personas spread over the default bins
    # Outputs here are made of their persona's words: closer personas, closer outputs (the paper's finding).
    means = [b["output_similarity"]["mean"] for b in sorted(filled, key=lambda b: b["persona_similarity"])]
    assert means == sorted(means)
    assert result["bins"][-1]["pairs"] == 0  # nobody is that unlike


def test_vectors_are_stored_once_and_the_study_is_repeatable(db):
    first = run_study("math", db=db, backend="fake", quiet=True)
    with Store(db, read_only=True) as store:
        counts = store.query("SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM output_embeddings)")[0]
    assert counts == (30, 30)
    again = run_study("math", db=db, backend="fake", quiet=True)
    with Store(db, read_only=True) as store:
        assert store.query("SELECT (SELECT count(*) FROM embeddings), (SELECT count(*) FROM output_embeddings)")[0] == counts
    assert again == first
    assert run_study("math", db=db, backend="fake", quiet=True, seed=1, max_pairs=3)["bins"][0]["pairs"] <= 3


def test_baseline_prompts_drop_the_persona_and_compare_spread(db):
    FakeBackend.calls = []
    result = run_study("math", db=db, backend="fake", baseline=6, quiet=True)
    sent = [c.completion for c in FakeBackend.calls]
    assert len(sent) == 6
    with Store(db, read_only=True) as store:
        personas = [r[0] for r in store.query("SELECT persona FROM personas")]
        baseline = store.query("SELECT status, input_id, options FROM generations WHERE task = 'math-baseline'")
        math_options = store.scalar("SELECT any_value(options) FROM generations WHERE task = 'math'")
    for prompt in sent:
        assert not any(p in prompt for p in personas)
        assert prompt.endswith("\n\nProblem:")  # the open record has no persona line
    assert len(baseline) == 6 and all(s == "ok" and i is None for s, i, _ in baseline)
    assert all(json.loads(o) == json.loads(math_options) for _, _, o in baseline)  # same prompt options
    base = result["baseline"]
    assert base["samples"] == 6
    without, with_ = base["without_personas"], base["with_personas"]
    assert without["mean_pairwise_similarity"] == pytest.approx(1.0, abs=1e-4)  # six copies of one problem
    assert without["near_duplicate_share"] == 1.0
    assert with_["mean_pairwise_similarity"] < 0.9 and with_["distinct_1"] > without["distinct_1"]
    # Running it again makes no new baseline rows: the six items are keyed by index.
    FakeBackend.calls = []
    run_study("math", db=db, backend="fake", baseline=6, quiet=True)
    assert FakeBackend.calls == []


def test_spread_measures_on_known_sets():
    same = np.tile(np.array([[0.6, 0.8]], np.float32), (4, 1))
    apart = np.eye(4, dtype=np.float32)
    assert persona_set(same)["mean_pairwise_similarity"] == pytest.approx(1.0)
    assert persona_set(apart)["mean_pairwise_similarity"] == 0.0
    assert persona_set(apart)["nearest_neighbour"]["p50"] == 0.0
    assert persona_set(apart[:1])["mean_pairwise_similarity"] is None
    assert output_spread(same, ["x"] * 4)["near_duplicate_share"] == 1.0
    assert output_spread(apart, ["a", "b", "c", "d"])["near_duplicate_share"] == 0.0
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == pytest.approx(2 / 3, abs=1e-4)
    assert distinct_n([""], 2) is None


def test_bad_requests_are_one_line_errors(db):
    for args, expected in [(["--task", "nope"], "no finished rows"), (["--task", "math", "--bins", "0.4,x"], "--bins"),
                           (["--task", "math", "--width", "2"], "--width"), (["--task", "math", "--baseline", "0"], "--baseline")]:
        result = cli("diversity", *args, "--backend", "fake", "--db", db)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.model
@pytest.mark.slow
def test_diversity_with_the_default_model(tmp_path):
    """The bundled model writes a few problems; the shipped sentence model embeds personas and problems."""
    rng = random.Random(3)
    combos = rng.sample([(r, p, h) for r in ROLES for p in PLACES for h in HOBBIES], 8)
    personas = [f"A {r} from a {p} who loves {h} on weekends" for r, p, h in combos]
    db = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in personas]))], db=db)
    run_task("math", db=db, limit=8)
    result = last_json(cli("diversity", "--task", "math", "--db", db, "--json", "--bins", "0.6,0.8,0.9",
                           "--width", "0.1", check=True))
    assert result["model"] == "all-MiniLM-L6-v2" and result["rows"] >= 2
    assert sum(b["pairs"] for b in result["bins"]) >= 1
    for b in result["bins"]:
        stats = b["output_similarity"]
        assert (stats["mean"] is None) == (b["pairs"] == 0)
        if b["pairs"]:
            assert -1 <= stats["mean"] <= 1 and 0 <= stats["std"] <= 2
    assert -1 <= result["personas"]["mean_pairwise_similarity"] <= 1
