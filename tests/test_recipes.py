"""Recipes: a synthesizer as a TOML file. The two examples in docs/recipes/ run here, and every kind of
broken recipe is one line naming the file and the field or line, exit code 2."""

from __future__ import annotations

import json
import shutil

import pytest

from personahub_core.recipes import load_recipe
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task

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
