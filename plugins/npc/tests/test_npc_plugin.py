"""The NPC synthesizer: rows that read like PersonaHub's, bundled and custom game worlds, an edited world
is new work, bad world files are one-line errors, and invalid NPC JSON is rejected with its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub_core.api import parse_task_options, resolve_task
from personahub_core.errors import UsageError
from personahub_core.prompting import demonstrations
from personahub_core.tasks import Completion, Rejected
from personahub_core.testing import PERSONAS, FakeBackend, cli, exported_rows, run_task, wheel_files
from personahub_npc import NPC as NPCModel
from personahub_npc import SCHEMA, GameNPCs

DEMOS = demonstrations("personahub_npc")
NPC = {"name": "Tamsin Reed", "role": "Ferrywoman at Glasswater Ford",
       "background": "Tamsin has poled travellers across the warm river for twenty years and remembers every face.",
       "personality": "Dry, watchful and fair.",
       "interaction": "Sells passage across the ford and trades rumours about missing caravans for a fair price."}


@pytest.fixture
def db(personas_store) -> Path:
    FakeBackend.responder = lambda p: json.dumps(NPC)
    return personas_store



def task(*args: str) -> GameNPCs:
    return GameNPCs(parse_task_options(resolve_task("npc"), list(args)))


@pytest.mark.slow
def test_demonstrations_ship_inside_the_plugin(tmp_path):
    """In the wheel pip installs, not only in this source tree (the tests run an editable install)."""
    assert "personahub_npc/demonstrations.jsonl" in wheel_files(Path(__file__).parents[1], tmp_path)


def test_demonstrations_pass_the_checks_answers_face():
    """The few-shot examples must pass the checks the model's answers face, or they teach the wrong thing."""
    assert {d["world"] for d in DEMOS} == {"ember-reach", "halcyon-drift"}
    for demo in DEMOS:
        NPCModel.model_validate(demo["npc"])
        assert all(len(demo["npc"][k]) <= s["maxLength"] for k, s in SCHEMA["properties"].items())


def test_row_reads_like_personahub_and_keeps_the_structure(db):
    run_task("npc", [], db=db, backend="fake", limit=1)
    row = exported_rows(db, "npc", full=True)[0]
    assert row["synthesized text"].startswith("Name: Tamsin Reed\nRole: Ferrywoman at Glasswater Ford\n")
    assert "Interaction with players: Sells passage" in row["synthesized text"]
    assert row["output"]["npc"] == NPC and row["output"]["world"] == "Ember Reach"
    prompt = FakeBackend.calls[0]
    assert "Kilnmouth" in prompt.completion and list(prompt.json_schema["properties"]) == list(NPC)


def test_one_step_parse_sees_the_finish_reason():
    assert task().parse(Completion(json.dumps(NPC)), PERSONAS[3]).fields["npc"] == NPC
    with pytest.raises(Rejected, match="the JSON was cut off at the token limit"):
        task().parse(Completion(json.dumps(NPC)[:80], finish_reason="length"), PERSONAS[3])


def test_invalid_npc_json_is_rejected_with_the_field(db):
    FakeBackend.responder = lambda p: json.dumps({**NPC, "name": ""})
    run_task("npc", [], db=db, backend="fake", limit=1)
    assert exported_rows(db, "npc", full=True, include_all=True)[0]["error"].startswith("invalid NPC JSON: name:")


def test_bundled_and_custom_worlds(db, tmp_path):
    assert "Halcyon Drift" in task("--world", "halcyon-drift").prompt(PERSONAS[3]).completion
    world = tmp_path / "saltmarsh.yaml"
    world.write_text("name: Saltmarsh Reach\npremise: >-\n  " + "A drowned coast of reed villages and tidal mills "
                     "where smugglers and river wardens argue over who owns the channels. " * 3
                     + "\nfactions:\n  - name: The Millers\n    description: Keep the tidal mills turning.\n"
                     "npc_roles:\n  - Reed cutter who knows the hidden channels\n", encoding="utf-8")
    prompt = task("--world", str(world)).prompt(PERSONAS[3])
    assert "# Saltmarsh Reach" in prompt.completion and "## NPC roles" in prompt.completion
    assert "- **The Millers**: Keep the tidal mills turning." in prompt.completion
    assert prompt.completion.endswith(f"World: Saltmarsh Reach\nPersona: {PERSONAS[3]}\nNPC:")
    run_task("npc", ["--world", str(world)], db=db, backend="fake", limit=1)
    assert exported_rows(db, "npc", full=True)[0]["output"]["world"] == "Saltmarsh Reach"


def test_chat_form_carries_the_world_too():
    chat = task("--world", "halcyon-drift").prompt(PERSONAS[3]).chat[0]["content"]
    assert chat.startswith("# Halcyon Drift") and "Tetherwrights" in chat and PERSONAS[3] in chat


def test_edited_world_is_new_work(db, tmp_path):
    world = tmp_path / "isle.md"
    world.write_text("# The Isle\n\n" + "A windswept island of lighthouses, wreckers and seal hunters. " * 6, encoding="utf-8")
    assert run_task("npc", ["--world", str(world)], db=db, backend="fake", limit=1)["items_done"] == 1
    assert run_task("npc", ["--world", str(world)], db=db, backend="fake", limit=1)["items_skipped"] >= 1
    world.write_text(world.read_text(encoding="utf-8") + "\n\nThe ferry now runs twice a week.", encoding="utf-8")
    assert run_task("npc", ["--world", str(world)], db=db, backend="fake", limit=1)["items_skipped"] == 0


@pytest.mark.parametrize("name, content, expected", [
    ("missing.yaml", None, "no such world file"),
    ("broken.yaml", "name: [unclosed\nsetting: x\n", "invalid YAML at line"),
    ("nameless.yaml", "setting: " + "a quiet valley " * 20 + "\n", "missing 'name'"),
    ("list.yaml", "- just\n- a list\n", "must be a mapping"),
    ("tiny.md", "# Tiny\n\nToo short.", "too short"),
    ("world.json", "{}", "unsupported world file type"),
])
def test_bad_world_file_is_named_in_a_one_line_error(tmp_path, name, content, expected):
    world = tmp_path / name
    if content is not None:
        world.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        parse_task_options(resolve_task("npc"), ["--world", str(world)])
    message = str(caught.value)
    assert "\n" not in message and str(world) in message and expected in message


def test_bad_world_file_exits_non_zero_without_traceback(db, tmp_path):
    world = tmp_path / "broken.yaml"
    world.write_text("name: Broken\nfactions: [unclosed\n", encoding="utf-8")
    result = cli("run", "--plugin", "npc", "--backend", "fake", "--db", db, "--world", world)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{world}: invalid YAML at line 3" in lines[0]
