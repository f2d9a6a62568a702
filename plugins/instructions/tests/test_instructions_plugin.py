"""The instructions synthesizer: one turn is the user prompt alone (one call, parse()); --turns N
alternates the persona's messages and the assistant's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub_core.prompting import demonstrations
from personahub_core.tasks import Completion, Rejected
from personahub_core.testing import PERSONAS, FakeBackend, exported_rows, run_task, wheel_files
from personahub_instructions import Instructions

DEMOS = demonstrations("personahub_instructions")
ASKED = " What flowers should I plant near my hives so the bees have forage from March to October?"
ANSWER = " Plant crocus and willow for early spring, fruit trees and borage for summer, and ivy for autumn."


def scripted(prompt) -> str:
    return ANSWER if prompt.completion.endswith("Assistant:") else ASKED


@pytest.fixture
def db(personas_store) -> Path:
    FakeBackend.responder = scripted
    return personas_store



@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_instructions/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_are_complete():
    assert len(DEMOS) == 4 and all(len(d["conversation"]) == 4 for d in DEMOS)


def test_one_turn_is_the_prompt_alone(db):
    run_task("instructions", [], db=db, backend="fake", limit=1)
    output = exported_rows(db, "instructions", full=True)[0]["output"]
    assert output["messages"] == [{"role": "user", "content": ASKED.strip()}]
    assert output["synthesized text"] == ASKED.strip()
    assert len(FakeBackend.calls) == 1


def test_parse_is_the_first_message():
    task = Instructions()
    assert task.parse(Completion("User prompt:" + ASKED), PERSONAS[3]).fields == {
        "messages": [{"role": "user", "content": ASKED.strip()}]}
    with pytest.raises(Rejected, match="too short"):
        task.parse(Completion(" Help me?"), PERSONAS[3])
    with pytest.raises(Rejected, match="copies a demonstration"):
        task.parse(Completion(" " + DEMOS[0]["conversation"][0]["content"]), PERSONAS[3])


def test_two_turns_store_four_alternating_messages(db):
    run_task("instructions", ["--turns", "2"], db=db, backend="fake", limit=2)
    for row in exported_rows(db, "instructions", full=True):
        messages = row["output"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert row["synthesized text"] == messages[0]["content"]
        assert all(m["content"] for m in messages)
    # The follow-up is written as the persona, after seeing the assistant's answer.
    follow_up = [p for p in FakeBackend.calls if p.completion.endswith("User:") and "\nAssistant: Plant crocus" in p.completion]
    assert follow_up
    persona = next(p for p in PERSONAS if p in follow_up[0].completion)
    assert f"You are this person: {persona}" in follow_up[0].chat[-1]["content"]
    answers = [p for p in FakeBackend.calls if p.completion.endswith("Assistant:")]
    assert answers[0].chat == [{"role": "user", "content": ASKED.strip()}]
    assert len(FakeBackend.calls) == 2 * 4
