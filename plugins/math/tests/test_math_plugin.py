"""The math synthesizer with the fake backend: its topic and difficulty controls, the optional solving
step, and the problems it rejects."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub_core.api import parse_task_options, resolve_task
from personahub_core.prompting import demonstrations
from personahub_core.tasks import Completion, Rejected
from personahub_core.testing import PERSONAS, FakeBackend, exported_rows, run_task, wheel_files
from personahub_math import MathProblems

DEMOS = demonstrations("personahub_math")
PROBLEM = (" A beekeeper has 12 hives that each give 18 kg of honey. She sells the honey in 0.5 kg jars at $7 a jar. "
           "How much money does she make if she sells it all?")
SOLUTION = " 12 × 18 = 216 kg of honey fills 216 / 0.5 = 432 jars, worth 432 × 7 = $3024.\nFinal answer: $3024"


def scripted(prompt) -> str:
    """A base model's continuation of the open slot: a problem, or its solution."""
    return SOLUTION if prompt.completion.endswith("Solution:") else PROBLEM


@pytest.fixture
def db(personas_store) -> Path:
    FakeBackend.responder = scripted
    return personas_store



def task(*args: str) -> MathProblems:
    return MathProblems(parse_task_options(resolve_task("math"), list(args)))


@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_math/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_are_complete():
    assert len(DEMOS) == 4 and all({"persona", "topic", "difficulty", "problem", "solution", "final_answer"} <= set(d)
                                   for d in DEMOS)


def test_topic_and_difficulty_label_every_record():
    prompt = task("--topic", "probability", "--difficulty", "olympiad").prompt(PERSONAS[3])
    assert prompt.completion.endswith(f"Persona: {PERSONAS[3]}\nTopic: probability\nDifficulty: olympiad\nProblem:")
    for demo in DEMOS:
        assert f"Topic: {demo['topic']}\nDifficulty: {demo['difficulty']}\nProblem: {demo['problem']}" in prompt.completion
    assert "about probability at olympiad level" in prompt.chat[0]["content"]
    assert "Topic:" not in task().prompt(PERSONAS[3]).completion


def test_mode_option_reaches_the_backend_and_the_row(db):
    run_task("math", ["--mode", "zero-shot"], db=db, backend="fake", limit=1)
    sent = FakeBackend.calls[0].completion
    assert not any(d["persona"] in sent or d["problem"] in sent for d in DEMOS)
    assert exported_rows(db, "math", full=True)[0]["options"]["mode"] == "zero-shot"


def test_without_solution_one_call_makes_the_row(db):
    """Without --with-solution each persona costs one call, and its row is the problem alone."""
    run_task("math", [], db=db, backend="fake", limit=2)
    assert len(FakeBackend.calls) == 2 and all(c.completion.endswith("Problem:") for c in FakeBackend.calls)
    rows = exported_rows(db, "math", full=True)
    assert [r["synthesized text"] for r in rows] == [PROBLEM.strip()] * 2
    assert all(set(r["output"]) == {"synthesized text", "description"} for r in rows)


def test_parse_rejects_a_problem_cut_at_the_token_limit():
    with pytest.raises(Rejected, match="runaway answer"):
        task().parse(Completion(PROBLEM, finish_reason="length"), PERSONAS[3])


def test_with_solution_keeps_solution_and_final_answer_apart(db):
    run_task("math", ["--with-solution"], db=db, backend="fake", limit=2)
    for row in exported_rows(db, "math", full=True):
        assert row["synthesized text"] == PROBLEM.strip()
        assert row["output"]["solution"] == "12 × 18 = 216 kg of honey fills 216 / 0.5 = 432 jars, worth 432 × 7 = $3024."
        assert row["output"]["final_answer"] == "$3024"
    solving = [p for p in FakeBackend.calls if p.completion.endswith("Solution:")]
    assert len(solving) == 2 and PROBLEM.strip() in solving[0].completion and solving[0].temperature == 0.2


def test_solution_without_final_answer_is_rejected(db):
    FakeBackend.responder = lambda p: "It is 3024 because 12 times 18 makes the weight." \
        if p.completion.endswith("Solution:") else PROBLEM
    summary = run_task("math", ["--with-solution"], db=db, backend="fake", limit=1)
    assert summary["items_rejected"] == 1
    assert exported_rows(db, "math", full=True, include_all=True)[0]["error"] == "solution has no 'Final answer:' line"


def test_copying_a_demonstration_is_rejected(db):
    FakeBackend.responder = lambda p: " " + DEMOS[1]["problem"]
    assert run_task("math", [], db=db, backend="fake", limit=1)["items_rejected"] == 1
    assert exported_rows(db, "math", full=True, include_all=True)[0]["error"] == "copies a demonstration"
