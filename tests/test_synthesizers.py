"""What every synthesizer plugin shares, across all six with the fake backend: rows in PersonaHub's
schema, the three prompting modes, the one-step path (``prompt`` then ``parse(completion, persona)``),
and answers rejected then retried. Each plugin's own behaviour is tested in plugins/<name>/tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personahub_core.api import parse_task_options, resolve_task
from personahub_core.prompting import answer_text, demonstrations, few_shot_block, reject_copies, structured_answer
from personahub_core.store import Store
from personahub_core.tasks import Completion, Rejected, WorkItem
from personahub_core.testing import PERSONAS, FakeBackend, cli, exported_rows, run_task

TASKS = ["math", "reasoning", "instructions", "knowledge", "npc", "tools"]
DESCRIPTIONS = {"math": "math problem", "reasoning": "logical reasoning problem", "instructions": "user prompt",
                "knowledge": "knowledge-rich text", "npc": "npc", "tools": "tool development"}

# A tool interface as the model writes it (input_args as a list), and an NPC.
TOOL = {"name": "Harvest Log Interface", "description": "Records the weight of honey taken from each hive on a date.",
        "function_name": "log_harvest",
        "input_args": [{"name": "hive_id", "type": "string", "description": "Which hive the honey came from."},
                       {"name": "kilograms", "type": "number", "description": "Weight of honey taken."}],
        "return": {"type": "boolean", "description": "True once the entry is saved."}, "depend": ["sqlite3"]}
NPC = {"name": "Tamsin Reed", "role": "Ferrywoman at Glasswater Ford",
       "background": "Tamsin has poled travellers across the warm river for twenty years and remembers every face.",
       "personality": "Dry, watchful and fair.",
       "interaction": "Sells passage across the ford and trades rumours about missing caravans for a fair price."}

# What a base model might write after each open slot a prompt ends with.
ANSWERS = {
    "Problem:": " A beekeeper has 12 hives that each give 18 kg of honey. She sells the honey in 0.5 kg jars at $7 "
                "a jar. How much money does she make if she sells it all?",
    "Solution:": " 12 × 18 = 216 kg of honey fills 216 / 0.5 = 432 jars, worth 432 × 7 = $3024.\nFinal answer: $3024",
    "Puzzle:": " Three hives, Amber, Birch and Clover, were inspected one after another on Monday. Birch was not "
               "first, and Clover was inspected right after Amber. In what order were they inspected?",
    "User:": " What flowers should I plant near my hives so the bees have forage from March to October?",
    "Assistant:": " Plant crocus and willow for early spring, fruit trees and borage for summer, and ivy for autumn.",
    "Title:": " Why heather honey sets like jelly\nArticle: Heather honey is thixotropic: it is a gel until you stir "
              "it, so it cannot be spun out of the comb like other honeys.\nBeekeepers press the comb instead, or "
              "loosen the honey first with a tool that pushes nylon needles into every cell and stirs it.\n"
              "Because pressing destroys the comb, the bees must draw new wax the next year, which costs them "
              "honey, and that is one reason the honey costs more in the shop.",
}


def scripted(prompt) -> str:
    """Plausible answers by the open slot each prompt ends with, as a base model would continue it."""
    if prompt.json_schema is not None:
        return json.dumps(TOOL if "function_name" in prompt.json_schema["properties"] else NPC)
    return ANSWERS[prompt.completion.rstrip().rsplit("\n", 1)[-1]]


@pytest.fixture
def db(personas_store) -> Path:
    """A store with the six test personas imported, and scripted fake answers."""
    FakeBackend.responder = scripted
    return personas_store



def first_prompt(task: str, args: list[str] | None = None, persona: str = PERSONAS[3]):
    """The first Prompt a task yields for one persona."""
    cls = resolve_task(task)
    return next(cls(parse_task_options(cls, args or [])).run_item(WorkItem("k", "p", {"persona": persona})))


# What each task's demonstrations look like in a prompt: the personas shown, and a piece of their output.
def shown_demos(task: str) -> list[dict]:
    demos = demonstrations(resolve_task(task).__module__)
    if task == "reasoning":
        return [d for d in demos if d["style"] == "logical"]
    if task == "npc":
        return [d for d in demos if d["world"] == "ember-reach"]
    return demos


def demo_output(task: str, demo: dict) -> str:
    return {"math": lambda d: d["problem"], "reasoning": lambda d: d["problem"], "knowledge": lambda d: d["title"],
            "instructions": lambda d: d["conversation"][0]["content"], "npc": lambda d: d["npc"]["name"],
            "tools": lambda d: d["tool"]["function_name"]}[task](demo)


@pytest.mark.parametrize("task", TASKS)
def test_run_from_empty_folder_exports_personahub_rows(db, task):
    summary = run_task(task, db=db, backend="fake", limit=2)
    assert (summary["items_done"], summary["items_failed"]) == (2, 0)
    exported = exported_rows(db, task)
    assert len(exported) == 2
    for row in exported:
        assert set(row) == {"input persona", "synthesized text", "description"}
        assert row["input persona"] in PERSONAS
        assert row["synthesized text"].strip()
        assert row["description"] == DESCRIPTIONS[task]
    full = exported_rows(db, task, full=True)[0]
    cls = resolve_task(task)
    assert (full["template"], full["template_version"]) == (cls.template, cls.template_version)
    assert full["options"]["mode"] == "persona-few-shot"


@pytest.mark.parametrize("task", TASKS)
def test_modes_change_what_the_prompt_shows(task):
    demos = shown_demos(task)
    for mode in ("zero-shot", "few-shot", "persona-few-shot"):
        prompt = first_prompt(task, ["--mode", mode])
        chat = prompt.chat[-1]["content"]
        for form in (prompt.completion, chat):
            assert PERSONAS[3] in form
            personas_shown = [d["persona"] in form for d in demos]
            outputs_shown = [demo_output(task, d) in form for d in demos]
            assert all(personas_shown) if mode == "persona-few-shot" else not any(personas_shown), (mode, form)
            assert not any(outputs_shown) if mode == "zero-shot" else all(outputs_shown), (mode, form)
        # The persona's own record is left open last, so a base model continues it.
        assert prompt.completion.rstrip().endswith(":") and prompt.completion.index(PERSONAS[3]) > len(prompt.completion) // 2


# A piece of each task's row that only the scripted answer holds.
FROM_ANSWER = {"math": "12 hives that each give 18 kg", "reasoning": "Amber, Birch and Clover",
               "instructions": "What flowers should I plant", "knowledge": "Why heather honey sets like jelly",
               "npc": "Tamsin Reed", "tools": "log_harvest"}


@pytest.mark.parametrize("task", TASKS)
def test_one_step_stores_the_answer_and_rejects_the_same_answer_cut_short(db, task):
    """With default options every synthesizer makes one call per persona and stores what the model wrote;
    the parser sees the finish reason: the same answer run on past the token limit is rejected."""
    assert run_task(task, db=db, backend="fake", limit=1)["items_done"] == 1
    assert len(FakeBackend.calls) == 1
    [row] = exported_rows(db, task)
    assert FROM_ANSWER[task] in row["synthesized text"]
    FakeBackend.responder = lambda prompt: scripted(prompt).replace("\n", " ") + " and on" * 2000  # one line, cut
    summary = run_task(task, db=db, backend="fake", limit=1)
    assert (summary["items_done"], summary["items_rejected"]) == (0, 1)
    assert len(exported_rows(db, task)) == 1


def test_bad_mode_is_a_one_line_error(db):
    result = cli("run", "--plugin", "math", "--backend", "fake", "--db", db, "--mode", "two-shot")
    assert result.returncode == 2
    assert "--mode" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("answer, reason", [
    ("", "empty answer"),
    ("Add it up.", "too short"),
    ("word " * 300, "runaway answer: stopped at the token limit"),
    ("There were four of them. " * 6, "repeats itself"),
    (PERSONAS[0], "repeats the persona instead of answering"),
    ("A whale swims past the boat every morning and the crew waves at it.", "asks no question"),
])
def test_unusable_answers_are_retried_once_then_stored_as_rejects(db, answer, reason):
    FakeBackend.responder = lambda r: answer
    summary = run_task("reasoning", [], db=db, backend="fake", limit=1)
    assert summary["items_rejected"] == 1
    row = exported_rows(db, "reasoning", full=True, include_all=True)[0]
    assert row["status"] == "rejected" and row["error"].startswith(reason)
    assert len(FakeBackend.calls) == 2 and FakeBackend.calls[0].seed != FakeBackend.calls[1].seed
    with Store(db, read_only=True) as store:
        raw = json.loads(store.scalar("SELECT raw_output FROM generations WHERE task = 'reasoning'"))
    assert len(raw) == 2


def test_few_shot_block_and_answer_checks():
    demos = [{"persona": "P1", "out": "O1"}, {"persona": "P2", "out": "O2"}]
    render = lambda d, with_persona: (f"Persona: {d['persona']}\n" if with_persona else "") + f"Out: {d['out']}"
    assert few_shot_block(demos, "zero-shot", render) == ""
    assert few_shot_block(demos, "few-shot", render) == "Out: O1\n\nOut: O2\n\n"
    assert few_shot_block(demos, "persona-few-shot", render) == "Persona: P1\nOut: O1\n\nPersona: P2\nOut: O2\n\n"
    assert answer_text(Completion("**Problem:** How many eggs are left?\nI hope this helps!"), label="Problem") \
        == "How many eggs are left?"
    with pytest.raises(Rejected, match="too long"):
        answer_text(Completion(" ".join(f"w{i}" for i in range(50))), max_words=40)
    with pytest.raises(Rejected, match="copies a demonstration"):
        reject_copies("Twelve hives give eighteen kilograms each", persona="A nurse", demos=["twelve hives give eighteen kilograms each year"])


def test_plugins_are_listed_with_their_synthesizers():
    listed = json.loads(cli("plugins", "--json", check=True).stdout)
    by_name = {p["name"]: p for p in listed}
    for task in TASKS:
        assert by_name[f"personahub-{task}"]["tasks"] == [{"kind": "synthesizer", "name": task}]
        assert re.fullmatch(r"\d+\.\d+\.\d+", by_name[f"personahub-{task}"]["version"])


def test_structured_answers_are_tidied_as_the_grammar_leaves_them():
    schema = {"type": "object", "properties": {"bio": {"type": "string", "maxLength": 40},
                                               "name": {"type": "string", "maxLength": 10}}}
    # A raw newline inside a string (the grammar allows it) and a string closed at its maxLength.
    bio = "Keeps bees.\nSells honey at the market on Saturdays"[:40]
    raw = '{"bio": "%s", "name": "Ada"}' % bio
    assert structured_answer(Completion(raw), schema) == {"bio": "Keeps bees.", "name": "Ada"}
    with pytest.raises(Rejected, match="name cut off at 10 characters"):
        structured_answer(Completion('{"bio": "x", "name": "Adalinda B"}'), schema)
    with pytest.raises(Rejected, match="invalid JSON"):
        structured_answer(Completion('{"bio": "unfinished'), schema)
    with pytest.raises(Rejected, match="token limit"):
        structured_answer(Completion('{"bio": "unfinished', finish_reason="length"), schema)
