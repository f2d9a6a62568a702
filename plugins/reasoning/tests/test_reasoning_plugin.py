"""The reasoning synthesizer: --style picks its definition and demonstrations; parse() checks the puzzle."""

from __future__ import annotations

from pathlib import Path

import pytest

from personahub_core.api import parse_task_options, resolve_task
from personahub_core.prompting import demonstrations
from personahub_core.tasks import Completion, Rejected
from personahub_core.testing import PERSONAS, FakeBackend, run_task, wheel_files
from personahub_reasoning import ReasoningProblems

DEMOS = demonstrations("personahub_reasoning")
PUZZLE = (" Three hives, Amber, Birch and Clover, were inspected one after another on Monday. Birch was not first, "
          "and Clover was inspected right after Amber. In what order were they inspected?")


def task(*args: str) -> ReasoningProblems:
    return ReasoningProblems(parse_task_options(resolve_task("reasoning"), list(args)))


@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_reasoning/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_are_complete():
    assert {d["style"] for d in DEMOS} == {"logical", "spatial", "trick"}


def test_style_picks_its_definition_and_demonstrations():
    prompt = task("--style", "trick").prompt(PERSONAS[3])
    assert "catch" in prompt.completion.split("\n\n")[0]
    assert all(d["problem"] in prompt.completion for d in DEMOS if d["style"] == "trick")
    assert not any(d["problem"] in prompt.completion for d in DEMOS if d["style"] != "trick")


def test_parse_keeps_the_style_and_rejects_an_answer_cut_short():
    result = task("--style", "spatial").parse(Completion("Puzzle:" + PUZZLE), PERSONAS[3])
    assert result.text == PUZZLE.strip() and result.fields == {"style": "spatial"}
    with pytest.raises(Rejected, match="runaway answer"):
        task().parse(Completion(PUZZLE, finish_reason="length"), PERSONAS[3])


def test_copying_a_demonstration_of_the_style_is_rejected(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    logical = next(d["problem"] for d in DEMOS if d["style"] == "logical")
    FakeBackend.responder = lambda p: " " + logical
    summary = run_task("reasoning", [], backend="fake", limit=1)
    assert summary["items_rejected"] == 1 and len(FakeBackend.calls) == 2  # retried once with a fresh seed
