"""``personahub diversity``: persona pairs binned by similarity against their outputs' similarity, the
persona set's own spread, and outputs with personas against a no-persona baseline."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from personahub_core.diversity import distinct_n, output_spread, persona_set
from personahub_core.diversity_command import run_study
from personahub_core.diversity_stats import compare, fidelity, pair_interval, significance_sentence, spread_intervals
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# -- how sure the study is: intervals, the with/without test, persona fidelity -------------------------
def unit_rows(rng: np.random.Generator, n: int, dim: int = 6) -> np.ndarray:
    vectors = rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def brute_spread(vectors: np.ndarray, texts: list[str], draw: np.ndarray) -> dict[str, float]:
    """The four figures of one bootstrap resample, by loops over the drawn positions: pairs of positions
    holding the same row are not pairs, and an n-gram occurrence weighs 1 / its count in all rows."""
    sims = vectors.astype(np.float64) @ vectors.T
    pairs = [sims[a, b] for p, a in enumerate(draw) for q, b in enumerate(draw) if p != q and a != b]
    near = [any(sims[a, b] >= 0.9 for b in draw if b != a) for a in draw]
    figures = {"mean_pairwise_similarity": float(np.mean(pairs)), "near_duplicate_share": float(np.mean(near))}
    for n in (1, 2):
        grams = [list(zip(*(w[k:] for k in range(n)))) for w in (t.lower().split() for t in texts)]
        seen = {}
        for row in grams:
            for g in row:
                seen[g] = seen.get(g, 0) + 1
        weights = [sum(1 / seen[g] for g in grams[a]) for a in draw]
        figures[f"distinct_{n}"] = sum(weights) / sum(len(grams[a]) for a in draw)
    return figures


def percentile_interval(values: list[float]) -> list[float]:
    return [round(float(np.percentile(values, 2.5)), 4), round(float(np.percentile(values, 97.5)), 4)]


def test_spread_intervals_match_a_brute_force_bootstrap():
    rng = np.random.default_rng(11)
    vectors = unit_rows(rng, 9, dim=3)
    vectors[1] = vectors[0]  # one near-duplicate pair
    words = ["bee", "hive", "honey", "jar", "wax", "comb", "queen", "drone", "pollen"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(9)]
    got = spread_intervals(vectors, texts, np.random.default_rng(5), resamples=200)
    draws = np.random.default_rng(5).integers(0, 9, size=(200, 9))
    replicates = [brute_spread(vectors, texts, d) for d in draws]
    for name, bounds in got.items():
        assert bounds == pytest.approx(percentile_interval([r[name] for r in replicates]), abs=2e-4), name
    point = output_spread(vectors, texts)
    for name, (lo, hi) in got.items():
        assert lo <= point[name] + 1e-4 and point[name] - 1e-4 <= hi, name  # the figure lies in its interval


def test_a_bins_interval_resamples_its_pairs():
    sims = np.random.default_rng(2).uniform(-1, 1, 15)
    check = np.random.default_rng(8)
    means = [sims[draw].mean() for draw in check.integers(0, 15, size=(1000, 15))]
    assert pair_interval(sims, np.random.default_rng(8)) == pytest.approx(percentile_interval(means), abs=2e-4)
    assert pair_interval(sims[:1], np.random.default_rng(8)) is None


def test_fidelity_matches_a_brute_force_count_and_chance_is_chance():
    rng = np.random.default_rng(3)
    personas = unit_rows(rng, 12)
    outputs = unit_rows(rng, 12)
    outputs[:6] = personas[:6]  # half the outputs sit on their own persona
    got = fidelity(personas, outputs, np.random.default_rng(9), k=4, draws=5)
    check = np.random.default_rng(9)
    cross = outputs.astype(np.float64) @ personas.T.astype(np.float64)
    rates = []
    for i in range(12):
        picks = [check.choice([j for j in range(12) if j != i], 3, replace=False) for _ in range(5)]
        rates.append(np.mean([all(cross[i, j] < cross[i, i] for j in p) for p in picks]))
    counts = np.stack([np.bincount(d, minlength=12) for d in check.integers(0, 12, size=(1000, 12))])
    assert got["rate"] == pytest.approx(np.mean(rates), abs=1e-4)
    assert got["interval"] == pytest.approx(percentile_interval(list(counts @ np.array(rates) / 12)), abs=2e-4)
    assert got["chance"] == 0.25 and got["k"] == 4 and got["outputs"] == 12
    assert all(r == 1.0 for r in rates[:6])  # an output equal to its persona always wins
    # Outputs unrelated to their personas pick their own at about chance.
    many = unit_rows(rng, 300)
    unrelated = fidelity(many, unit_rows(rng, 300), np.random.default_rng(1), k=5)
    lo, hi = unrelated["interval"]
    assert lo < 0.2 < hi
    assert fidelity(personas[:3], outputs[:3], np.random.default_rng(0), k=4)["rate"] is None  # fewer rows than k


def test_with_and_without_personas_difference_has_an_interval_and_a_plain_sentence():
    rng = np.random.default_rng(4)
    spread_out = unit_rows(rng, 40, dim=16)
    clumped = unit_rows(rng, 40, dim=16) * 0.1 + unit_rows(rng, 1, dim=16)
    clumped = (clumped / np.linalg.norm(clumped, axis=1, keepdims=True)).astype(np.float32)
    texts = [f"problem {i} about item {i * 7}" for i in range(40)]
    result = compare(spread_out, texts, clumped, texts, np.random.default_rng(0))
    d = result["mean_pairwise_similarity"]
    assert d["difference"] < 0 and d["interval"][1] < 0 and d["p_value"] < 0.01
    assert significance_sentence(result, 40).startswith("Outputs written with personas are more diverse than without")
    same = compare(spread_out[:20], texts[:20], spread_out[20:], texts[20:], np.random.default_rng(0))
    lo, hi = same["mean_pairwise_similarity"]["interval"]
    assert lo < 0 < hi and same["mean_pairwise_similarity"]["p_value"] > 0.05
    assert significance_sentence(same, 20).startswith("No significant difference")
    assert result["distinct_1"]["difference"] == 0.0  # the same texts on both sides


@pytest.mark.slow
def test_study_json_has_intervals_fidelity_warnings_and_a_verdict(db):
    result = last_json(cli("diversity", "--task", "math", "--backend", "fake", "--db", db, "--json", check=True))
    for b in result["bins"]:
        if b["pairs"] >= 2:
            lo, hi = b["output_similarity"]["interval"]
            assert lo <= b["output_similarity"]["mean"] <= hi
    assert set(result["outputs"]["intervals"]) == {"mean_pairwise_similarity", "distinct_1", "distinct_2",
                                                   "near_duplicate_share"}
    fid = result["fidelity"]
    assert fid["k"] == 5 and fid["chance"] == 0.2 and fid["outputs"] == 30
    assert fid["rate"] > 0.8 and fid["interval"][0] > fid["chance"]  # each fake problem is made of its persona's words
    assert any("only 30 rows" in w for w in result["warnings"])
    assert "No no-persona baseline" in result["verdict"] and "above chance" in result["verdict"]
    assert "Small sample" in result["verdict"]


def test_the_baseline_is_held_to_the_task_checks(db):
    """A no-persona sample that is a persona description, not a problem, is rejected like any other row."""
    FakeBackend.responder = lambda request: ("A dentist who has a practice in a busy city."
                                             if "Persona: " not in request.completion.rstrip().split("\n")[-2]
                                             else problem_for(request))
    run_study("math", db=db, backend="fake", baseline=3, quiet=True)
    with Store(db, read_only=True) as store:
        rows = store.query("SELECT status, error FROM generations WHERE task = 'math-baseline'")
    assert len(rows) == 3 and all(s == "rejected" and e.startswith("asks no question") for s, e in rows)
