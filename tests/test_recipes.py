"""Recipes: a synthesizer as a TOML file. The two examples in docs/recipes/ run here, and every kind of
broken recipe is one line naming the file and the field or line, exit code 2."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from personahub_core.recipes import RecipeError, load_recipe
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, exported_rows, run_task

from personahub_core.testing import PERSONAS, cli, last_json, write_jsonl
from conftest import REPO

RECIPES = REPO / "docs" / "recipes"
LIMERICK = RECIPES / "limerick.toml"
INTERVIEW = RECIPES / "interview-question.toml"
A_LIMERICK = "The kettle goes on before dawn / I answer the mail with a yawn / the meetings stack high / " \
             "as the hours fly by / and by five all my patience is gone"


@pytest.fixture
def db(personas_store):
    return personas_store


def rows(db, task: str) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query_dicts("SELECT status, output, error, template, template_version FROM generations "
                                 "WHERE task = ? ORDER BY key", [task])


@pytest.mark.slow
def test_limerick_recipe_runs_through_the_cli_and_exports_by_its_name(tmp_path, db):
    env = {"PERSONAHUB_FAKE_ANSWER": A_LIMERICK, "PERSONAHUB_DB": str(db)}
    summary = last_json(cli("run", "--plugin", LIMERICK, "--backend", "fake", "--subject", "a deadline",
                            "--json", "-q", env=env, check=True))
    assert summary["task"] == "limerick" and summary["items_done"] == len(PERSONAS)

    cli("export", "limerick", "--format", "jsonl", "--out", tmp_path / "out.jsonl", env=env, check=True)
    exported = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(row["input persona"] for row in exported) == sorted(PERSONAS)
    assert set(exported[0]) == {"input persona", "synthesized text", "description"}
    assert exported[0]["synthesized text"] == A_LIMERICK
    assert exported[0]["description"] == "a limerick a persona might write about their work"

    again = last_json(cli("run", "--plugin", LIMERICK, "--backend", "fake", "--subject", "a deadline",
                          "--json", "-q", env=env, check=True))
    assert again["items_done"] == 0, "an unchanged recipe resumes instead of writing rows again"


def test_editing_a_recipe_makes_new_rows(tmp_path, db):
    FakeBackend.responder = lambda request: A_LIMERICK
    copy = tmp_path / "mine"
    shutil.copytree(RECIPES, copy)
    recipe = copy / "limerick.toml"
    assert run_task(str(recipe), db=db, backend="fake")["items_done"] == len(PERSONAS)
    assert run_task(str(recipe), db=db, backend="fake")["items_done"] == 0

    recipe.write_text(recipe.read_text().replace("temperature = 0.9", "temperature = 0.8"))
    assert run_task(str(recipe), db=db, backend="fake")["items_done"] == len(PERSONAS)
    (copy / "limerick.jsonl").write_text((copy / "limerick.jsonl").read_text().replace("harbour", "station"))
    assert run_task(str(recipe), db=db, backend="fake")["items_done"] == len(PERSONAS), "the examples are part of it"
    versions = {r["template_version"] for r in rows(db, "limerick")}
    assert len(versions) == 3 and {r["template"] for r in rows(db, "limerick")} == {"recipe:limerick.toml"}


def test_modes_show_the_demonstrations_as_the_paper_does(db):
    FakeBackend.responder = lambda request: A_LIMERICK
    demos = [json.loads(line) for line in (RECIPES / "limerick.jsonl").read_text().splitlines()]
    prompts = {}
    for mode in ("zero-shot", "few-shot", "persona-few-shot"):
        FakeBackend.calls = []
        run_task(str(LIMERICK), ["--mode", mode, "--subject", "rain"], db=db, backend="fake", limit=1)
        [request] = FakeBackend.calls
        prompts[mode] = request
    for mode, request in prompts.items():
        assert request.completion.endswith("\nAnswer:")
        assert "limerick about rain, in the voice of this person:" in request.completion
        assert request.stop == ["\nAnswer:", "\nWrite a five-line limerick about", "\n"]
        assert request.max_tokens == 90 and request.temperature == 0.9
        shown_outputs = sum(d["output"] in request.completion for d in demos)
        shown_personas = sum(d["persona"] in request.completion for d in demos)
        assert shown_outputs == (0 if mode == "zero-shot" else 3), mode
        assert shown_personas == (3 if mode == "persona-few-shot" else 0), mode
        assert request.chat[0]["content"].startswith("Here are some examples:") == (mode != "zero-shot")


def test_schema_recipe_decodes_under_the_schema_and_checks_answers(db):
    schema = load_recipe(INTERVIEW).schema
    good = {"question": "What would you check first on a cold morning?", "good_answer_shows": "That they know the machine."}
    FakeBackend.responder = lambda request: json.dumps(good)
    summary = run_task(str(INTERVIEW), db=db, backend="fake", limit=2)
    assert summary["items_done"] == 2
    assert FakeBackend.calls[0].json_schema == schema and list(schema["properties"]) == ["question", "good_answer_shows"]
    output = json.loads(rows(db, "interview-question")[0]["output"])
    assert json.loads(output["synthesized text"]) == good

    FakeBackend.responder = lambda request: json.dumps({"question": "Too short?"} | {"good_answer_shows": "short"})
    summary = run_task(str(INTERVIEW), db=db, backend="fake", limit=2, seed=1)
    assert summary["items_done"] == 0 and summary["items_rejected"] == 2
    rejected = [r for r in rows(db, "interview-question") if r["status"] == "rejected"]
    assert "good_answer_shows: 'short' is too short" in rejected[0]["error"]

    demo = json.loads((RECIPES / "interview-question.jsonl").read_text().splitlines()[2])["output"]
    FakeBackend.responder = lambda request: json.dumps(good | {"good_answer_shows": demo["good_answer_shows"]})
    summary = run_task(str(INTERVIEW), db=db, backend="fake", limit=1, seed=2)
    assert summary["items_rejected"] == 1, "a small model echoing a demonstration's field is caught"
    assert [r["error"] for r in rows(db, "interview-question")].count("copies a demonstration") == 1


def test_installed_task_names_are_not_taken_by_recipes(tmp_path):
    (tmp_path / "math.toml").write_text('name = "math"\nprompt = "A sum for {persona}"\n')
    result = cli("run", "--plugin", tmp_path / "math.toml", "--backend", "fake")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'math.toml'}: name: 'math' is an installed task; give the recipe another name"


GOOD = 'name = "r"\nprompt = "Write for {persona}"\n'
BROKEN = [
    ("name = \"r\"\nprompt = \n", "r.toml: invalid TOML: Invalid value (at line 2, column 10)"),
    ('prompt = "Write for {persona}"\n', "r.toml: name: missing (a non-empty string is required)"),
    ('name = "r"\n', "r.toml: prompt: missing (a non-empty string is required)"),
    ('name = "r"\nprompt = "Write {topic} for {persona}"\n',
     "r.toml: prompt: unknown placeholder {topic} (known: {persona}; write {{ and }} for literal braces)"),
    ('name = "r"\nprompt = "Write for someone"\n', "r.toml: prompt: the template must use {persona}"),
    (GOOD + 'temprature = 0.5\n', "r.toml: temprature: unknown field"),
    (GOOD + 'max_tokens = 0\n', "r.toml: max_tokens: expected a number from 1, got 0"),
    (GOOD + '[schema]\ntype = "objekt"\n', "r.toml: schema.type: not a valid JSON schema: 'objekt' is not valid"),
    (GOOD + 'examples = "missing.jsonl"\n', "r.toml: examples: cannot read"),
    (GOOD + 'examples = "demos.jsonl"\n', "demos.jsonl:2: invalid JSON"),
    (GOOD + 'examples = "schema-demos.jsonl"\n[schema]\ntype = "object"\nrequired = ["a"]\n',
     "schema-demos.jsonl:1: output: 'a' is a required property"),
]


@pytest.mark.parametrize("text, message", BROKEN)
def test_a_broken_recipe_is_one_line_naming_file_and_field(tmp_path, text, message):
    (tmp_path / "r.toml").write_text(text)
    write_jsonl(tmp_path / "demos.jsonl", [{"persona": "p", "output": "o"}])
    (tmp_path / "demos.jsonl").write_text((tmp_path / "demos.jsonl").read_text() + "{not json\n")
    write_jsonl(tmp_path / "schema-demos.jsonl", [{"persona": "p", "output": {"b": 1}}])
    result = cli("run", "--plugin", tmp_path / "r.toml", "--backend", "fake", "--db", tmp_path / "s.duckdb")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {tmp_path}/") and message in lines[0], lines[0]
    assert not (tmp_path / "s.duckdb").exists(), "a bad recipe is reported before the store is opened"


@pytest.mark.model
@pytest.mark.slow
def test_schema_recipe_on_the_default_model(db):
    """The grammar built from the recipe's schema makes the real model answer valid JSON of that shape."""
    summary = run_task(str(INTERVIEW), db=db, backend="llama-cpp", limit=2)
    assert summary["items_done"] + summary["items_failed"] == 2 and summary["completion_tokens"] > 0
    stored = rows(db, "interview-question")
    assert len(stored) == 2
    assert all(r["status"] in ("ok", "rejected") for r in stored), [r["error"] for r in stored]
    schema = load_recipe(INTERVIEW).schema
    for row in stored:
        if row["status"] == "ok":
            answer = json.loads(json.loads(row["output"])["synthesized text"])
            assert set(answer) == set(schema["properties"]) and all(len(v) >= 10 for v in answer.values())


VALIDITY = RECIPES / "rubric-validity.toml"
RELEVANCE = RECIPES / "rubric-relevance.toml"


def test_judge_recipes_score_another_tasks_rows(db):
    """A recipe with input = "rows" reads --task's rows: one verdict per row with its score and reasons,
    passing at 4; export keeps rows by them."""
    FakeBackend.responder = lambda p: f" A stall sells {len(p.completion) % 50 + 2} jars of honey at $7 a jar. How much does it take?"
    run_task("math", db=db, backend="fake", limit=3)
    scores = iter([5, 2, 4])
    FakeBackend.responder = lambda p: json.dumps({"reasons": "It gives the numbers and asks one question.", "score": next(scores)})
    summary = run_task(str(VALIDITY), ["--task", "math"], db=db, backend="fake")
    assert (summary["items_done"], summary["kind"]) == (3, "verifier")
    prompt = FakeBackend.calls[-1]
    assert prompt.json_schema == load_recipe(VALIDITY).schema
    demos = [json.loads(line) for line in (RECIPES / "rubric-validity.jsonl").read_text().splitlines()]
    assert all(d["text"] in prompt.completion and json.dumps(d["output"]) in prompt.completion for d in demos)
    with Store(db, read_only=True) as store:
        judged = store.query_dicts(
            "SELECT v.output, json_extract_string(g.output, '$.\"synthesized text\"') AS text FROM generations v "
            "JOIN generations g ON g.key = v.input_id WHERE v.task = 'rubric-validity' ORDER BY v.key")
    asked = [c.completion.rsplit("\n\n", 1)[-1] for c in FakeBackend.calls[-3:]]  # each prompt's own record
    assert sorted(a.split("\n", 1)[0] for a in asked) == sorted(f"Problem: {j['text']}" for j in judged)
    verdicts = [json.loads(j["output"]) for j in judged]
    assert sorted((v["score"], v["passed"]) for v in verdicts) == [(2, False), (4, True), (5, True)]
    assert all(v["verifies"] == "math" and v["reasons"].startswith("It gives") for v in verdicts)
    assert len(exported_rows(db, "math", where=["score>=4"])) == 2
    assert len(exported_rows(db, "math", where=["score>=5", "verdict=rubric-validity"])) == 1
    # Resumed: nothing new. The relevance rubric shows the persona as well as the text.
    assert run_task(str(VALIDITY), ["--task", "math"], db=db, backend="fake")["items_done"] == 0
    FakeBackend.responder = lambda p: json.dumps({"reasons": "Honey jars belong to this persona's world.", "score": 4})
    run_task(str(RELEVANCE), ["--task", "math"], db=db, backend="fake", limit=1)
    record = FakeBackend.calls[-1].completion.rsplit("\n\n", 1)[-1]
    assert record.startswith("Persona: ") and record.split("\n")[0].removeprefix("Persona: ") in PERSONAS
    assert record.split("\n")[1].removeprefix("Text: ") in [j["text"] for j in judged]
    assert record.endswith("Give the reasons, then the score, in JSON.\nAnswer:")


JUDGE = 'name = "j"\ninput = "rows"\nprompt = "Judge {text}"\n'
SCORED = '[schema]\ntype = "object"\nrequired = ["score"]\n[schema.properties.score]\ntype = "integer"\n'


@pytest.mark.parametrize("text, message", [
    (JUDGE, "j.toml: schema: a judge (input = \"rows\") needs an object schema with a required integer 'score'"),
    (JUDGE + '[schema]\ntype = "object"\n[schema.properties.score]\ntype = "string"\n', "required integer 'score'"),
    ('name = "j"\ninput = "rows"\nprompt = "Judge {persona}"\n' + SCORED, "j.toml: prompt: the template must use {text}"),
    (JUDGE + 'mode = "few-shot"\n' + SCORED, "j.toml: mode: a judge (input = \"rows\") always shows its examples whole"),
    ('name = "j"\ninput = "docs"\nprompt = "Judge {text}"\n', "j.toml: input: 'docs': expected \"personas\""),
    ('name = "j"\nprompt = "Judge {text} for {persona}"\n', "j.toml: prompt: unknown placeholder {text}"),
    (JUDGE + 'examples = "demos.jsonl"\n' + SCORED, "demos.jsonl:1: expected an object with \"persona\" (a string), \"text\""),
])
def test_a_broken_judge_recipe_names_file_and_field(tmp_path, text, message):
    (tmp_path / "j.toml").write_text(text)
    write_jsonl(tmp_path / "demos.jsonl", [{"persona": "p", "output": {"score": 3}}])
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(tmp_path / "j.toml")


def test_a_broken_judge_recipe_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "j.toml").write_text(JUDGE)
    result = cli("run", "--plugin", tmp_path / "j.toml", "--task", "math", "--backend", "fake", "--db", tmp_path / "s.duckdb")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path / 'j.toml'}: schema: a judge (input = \"rows\") needs an object " \
                                    "schema with a required integer 'score'"
