"""The tools synthesizer: rows are PersonaHub's released tool JSON, invalid interfaces are rejected with
their field, and --implement stores code that nothing ever runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub_core.prompting import demonstrations
from personahub_core.tasks import Completion, Rejected, WorkItem
from personahub_core.testing import PERSONAS, FakeBackend, exported_rows, run_task, wheel_files
from personahub_tools import SCHEMA, Tool, ToolInterfaces, as_written

DEMOS = demonstrations("personahub_tools")
KEYS = ["name", "description", "function_name", "input_args", "return", "depend"]
TOOL = {"name": "Harvest Log Interface", "description": "Records the weight of honey taken from each hive on a date.",
        "function_name": "log_harvest",
        "input_args": {"hive_id": {"type": "string", "description": "Which hive the honey came from."},
                       "kilograms": {"type": "number", "description": "Weight of honey taken."}},
        "return": {"type": "boolean", "description": "True once the entry is saved."}, "depend": ["sqlite3"]}
# Side effect a generated implementation would have if anything ran it.
CODE = 'def log_harvest(hive_id, kilograms):\n    return True\n\nopen("EXECUTED", "w").write("ran")\n'


def scripted(prompt) -> str:
    return CODE if prompt.completion.endswith("```python\n") else json.dumps(as_written(TOOL))


@pytest.fixture
def db(personas_store) -> Path:
    FakeBackend.responder = scripted
    return personas_store



@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_tools/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_pass_the_checks_answers_face():
    for demo in DEMOS:
        tool = Tool.model_validate(demo["tool"])
        assert tool.model_dump(by_alias=True) == demo["tool"]
        assert f"def {tool.function_name}(" in demo["implementation"]
        assert len(demo["tool"]["description"]) <= SCHEMA["properties"]["description"]["maxLength"]


def test_rows_are_the_released_tool_json(db):
    run_task("tools", [], db=db, backend="fake", limit=2)
    for row in exported_rows(db, "tools", full=False):
        tool = json.loads(row["synthesized text"])
        assert list(tool) == KEYS
        assert all(set(arg) == {"type", "description"} for arg in tool["input_args"].values())
        assert set(tool["return"]) == {"type", "description"}
        assert all(isinstance(d, str) for d in tool["depend"])
    schema = FakeBackend.calls[0].json_schema
    assert list(schema["properties"]) == KEYS and schema["required"] == KEYS
    # The model writes input_args as a bounded list, which the row turns into the released mapping.
    assert schema["properties"]["input_args"]["maxItems"] == 4
    assert json.dumps(as_written(DEMOS[0]["tool"]), ensure_ascii=False) in FakeBackend.calls[0].completion


def test_parse_is_the_interface_alone():
    task = ToolInterfaces()
    result = task.parse(Completion(json.dumps(as_written(TOOL))), PERSONAS[3])
    assert json.loads(result.text) == TOOL and result.fields == {"tool": TOOL}
    with pytest.raises(Rejected, match="cut off at the token limit"):
        task.parse(Completion(json.dumps(as_written(TOOL))[:90], finish_reason="length"), PERSONAS[3])


def test_invalid_interfaces_are_rejected_with_the_field(db):
    twice = {**as_written(TOOL), "input_args": [{"name": "kilograms", "type": "number", "description": "Weight."}] * 2}
    FakeBackend.responder = lambda p: json.dumps(twice)
    run_task("tools", [], db=db, backend="fake", limit=1)
    assert exported_rows(db, "tools", full=True, include_all=True)[0]["error"] == "argument 'kilograms' given twice"
    with pytest.raises(Rejected, match="invalid tool JSON: input_args.when.type:"):
        ToolInterfaces().parse(Completion(json.dumps({**TOOL, "input_args": {"when": {"type": "date", "description": "a day"}}})),
                               PERSONAS[3])


def test_names_become_python_identifiers(db):
    FakeBackend.responder = lambda p: json.dumps({**TOOL, "function_name": "Log Harvest"})
    run_task("tools", [], db=db, backend="fake", limit=1)
    assert json.loads(exported_rows(db, "tools", full=False)[0]["synthesized text"])["function_name"] == "log_harvest"


def test_implement_stores_code_and_never_runs_it(db, tmp_path):
    run_task("tools", ["--implement"], db=db, backend="fake", limit=2)
    for row in exported_rows(db, "tools", full=True):
        assert row["output"]["implementation"] == CODE.strip("\n")
        assert row["output"]["tool"] == TOOL
    assert not (tmp_path / "EXECUTED").exists()
    code_prompt = next(p for p in FakeBackend.calls if p.completion.endswith("```python\n"))
    assert '"function_name": "log_harvest"' in code_prompt.completion and code_prompt.stop == ["```"]


def test_implement_is_a_second_step_after_parse():
    """--implement runs the one-step path (prompt, parse) first, then asks for the code of that interface."""
    task = ToolInterfaces(ToolInterfaces.Options(implement=True))
    steps = task.run_item(WorkItem("k", "p", {"persona": PERSONAS[3]}))
    assert next(steps).json_schema == SCHEMA
    code_prompt = steps.send(Completion(json.dumps(as_written({**TOOL, "function_name": "Log Harvest"}))))
    assert code_prompt.completion.endswith('"depend": ["sqlite3"]}\nImplementation:\n```python\n')
    assert "named log_harvest" in code_prompt.chat[0]["content"]
    with pytest.raises(Rejected, match=r"implementation does not define log_harvest\(\)"):
        steps.send(Completion("def something_else():\n    pass\n"))
