"""The six synthesizers against the real default model (Gemma 3 270M base through llama.cpp), two
personas each (four for tools, whose quality checks reject about a quarter of this model's answers): the prompts' completion forms work end to end, nothing crashes, and the tools
interfaces decoded under their JSON schema are valid JSON of PersonaHub's released form."""

from __future__ import annotations

import json

import pytest

from personahub_core.store import Store
from personahub_core.testing import run_task

from personahub_core.testing import PERSONAS

pytestmark = [pytest.mark.model, pytest.mark.slow]

TOOL_KEYS = ["name", "description", "function_name", "input_args", "return", "depend"]
LIMITS = {"tools": 4}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One store for the module, so the model's answers to one task do not depend on another's."""
    folder = tmp_path_factory.mktemp("real")
    personas = folder / "personas.jsonl"
    personas.write_text("".join(json.dumps({"persona": p}) + "\n" for p in PERSONAS[:4]), encoding="utf-8")
    path = folder / "store.duckdb"
    run_task("import", ["--input", str(personas)], db=path)
    return path


def generations(db, task: str) -> list[dict]:
    with Store(db, read_only=True) as store:
        return store.query_dicts("SELECT status, output, raw_output, error FROM generations WHERE task = ?", [task])


@pytest.mark.parametrize("task", ["math", "reasoning", "instructions", "knowledge", "npc", "tools"])
def test_each_synthesizer_runs_on_the_default_model(db, task):
    limit = LIMITS.get(task, 2)
    summary = run_task(task, db=db, backend="llama-cpp", limit=limit)
    assert summary["items_done"] + summary["items_failed"] == limit
    assert summary["completion_tokens"] > 0
    assert 0 < summary["slot_occupancy"] <= 1  # the summary shows how full llama.cpp kept its slots
    rows = generations(db, task)
    assert len(rows) == limit
    # Rejected answers are the model's fault and are kept with a reason; "failed" would be ours.
    assert all(r["status"] in ("ok", "rejected") for r in rows), [r["error"] for r in rows]
    assert all(r["error"] for r in rows if r["status"] == "rejected")
    # Every answer rejected would mean the prompt or the parser no longer works with this model.
    assert any(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    for row in rows:
        if row["status"] == "ok":
            assert json.loads(row["output"])["synthesized text"].strip()


def test_tools_are_valid_json_of_the_released_form(db):
    if not generations(db, "tools"):
        run_task("tools", db=db, backend="llama-cpp", limit=LIMITS["tools"])
    rows = generations(db, "tools")
    assert any(row["status"] == "ok" for row in rows), [row["error"] for row in rows]
    for row in rows:
        if row["status"] == "rejected" and "token limit" in row["error"]:
            continue  # an answer cut off by max tokens is the one way grammar output can be incomplete
        for raw in json.loads(row["raw_output"]):
            # As the grammar makes the model write it: input_args a list. The grammar lets raw control
            # characters into strings, which strict JSON forbids; the stored row is strict JSON.
            written = json.loads(raw, strict=False)
            assert list(written) == TOOL_KEYS
            assert all(list(arg) == ["name", "type", "description"] for arg in written["input_args"])
            assert list(written["return"]) == ["type", "description"] and isinstance(written["depend"], list)
        if row["status"] == "ok":
            tool = json.loads(json.loads(row["output"])["synthesized text"])
            assert list(tool) == TOOL_KEYS
            assert all(list(arg) == ["type", "description"] for arg in tool["input_args"].values())
