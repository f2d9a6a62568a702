"""The six synthesizer plugins with the fake backend: rows in PersonaHub's schema, the three prompting
modes, each plugin's own options, and parsers that reject what is not usable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from personahub_core.api import parse_task_options, resolve_task
from personahub_core.errors import UsageError
from personahub_core.export import export
from personahub_core.prompting import answer_text, few_shot_block, reject_copies, structured_answer
from personahub_core.sample_data import demonstrations
from personahub_core.store import Store
from personahub_core.tasks import Completion, Rejected, WorkItem
from personahub_core.testing import FakeBackend, run_task
from personahub_tools import as_written

from personahub_core.testing import PERSONAS, cli

TASKS = ["math", "reasoning", "instructions", "knowledge", "npc", "tools"]
DESCRIPTIONS = {"math": "math problem", "reasoning": "logical reasoning problem", "instructions": "user prompt",
                "knowledge": "knowledge-rich text", "npc": "npc", "tools": "tool development"}
TOOL_KEYS = ["name", "description", "function_name", "input_args", "return", "depend"]

TOOL = {"name": "Harvest Log Interface", "description": "Records the weight of honey taken from each hive on a date.",
        "function_name": "log_harvest",
        "input_args": {"hive_id": {"type": "string", "description": "Which hive the honey came from."},
                       "kilograms": {"type": "number", "description": "Weight of honey taken."}},
        "return": {"type": "boolean", "description": "True once the entry is saved."}, "depend": ["sqlite3"]}
NPC = {"name": "Tamsin Reed", "role": "Ferrywoman at Glasswater Ford",
       "background": "Tamsin has poled travellers across the warm river for twenty years and remembers every face.",
       "personality": "Dry, watchful and fair.",
       "interaction": "Sells passage across the ford and trades rumours about missing caravans for a fair price."}
# Side effect a generated implementation would have if anything ran it.
CODE = 'def log_harvest(hive_id, kilograms):\n    return True\n\nopen("EXECUTED", "w").write("ran")\n'


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


def scripted(request) -> str:
    """Plausible answers by the open slot each prompt ends with, as a base model would continue it."""
    if request.json_schema is not None:
        return json.dumps(as_written(TOOL) if "function_name" in request.json_schema["properties"] else NPC)
    if request.prompt.endswith("```python\n"):
        return CODE
    return ANSWERS[request.prompt.rstrip().rsplit("\n", 1)[-1]]


@pytest.fixture
def db(tmp_path, personas_file) -> Path:
    """A store with the six test personas imported, and scripted fake answers."""
    path = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(personas_file)], db=path)
    FakeBackend.responder = scripted
    return path


def rows(db: Path, task: str, full: bool = False, include_all: bool = False) -> list[dict]:
    out = db.parent / f"{task}.jsonl"
    with Store(db, read_only=True) as store:
        export(store, task, "jsonl", out, full=full, include_all=include_all)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def first_prompt(task: str, args: list[str] | None = None, persona: str = PERSONAS[3]):
    """The first Prompt a task yields for one persona."""
    cls = resolve_task(task)
    return next(cls(parse_task_options(cls, args or [])).run_item(WorkItem("k", "p", {"persona": persona})))


# What each task's demonstrations look like in a prompt: the personas shown, and a piece of their output.
def shown_demos(task: str) -> list[dict]:
    demos = demonstrations(task)
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
    exported = rows(db, task)
    assert len(exported) == 2
    for row in exported:
        assert set(row) == {"input persona", "synthesized text", "description"}
        assert row["input persona"] in PERSONAS
        assert row["synthesized text"].strip()
        assert row["description"] == DESCRIPTIONS[task]
    full = rows(db, task, full=True)[0]
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


def test_mode_option_reaches_the_backend_and_the_row(db):
    run_task("math", ["--mode", "zero-shot"], db=db, backend="fake", limit=1)
    sent = FakeBackend.calls[0].prompt
    assert not any(d["persona"] in sent or d["problem"] in sent for d in demonstrations("math"))
    assert rows(db, "math", full=True)[0]["options"]["mode"] == "zero-shot"


def test_bad_mode_is_a_one_line_error(db):
    result = cli("run", "--plugin", "math", "--backend", "fake", "--db", db, "--mode", "two-shot")
    assert result.returncode == 2
    assert "--mode" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_math_topic_and_difficulty_label_every_record():
    prompt = first_prompt("math", ["--topic", "probability", "--difficulty", "olympiad"])
    assert prompt.completion.endswith(f"Persona: {PERSONAS[3]}\nTopic: probability\nDifficulty: olympiad\nProblem:")
    for demo in demonstrations("math"):
        assert f"Topic: {demo['topic']}\nDifficulty: {demo['difficulty']}\nProblem: {demo['problem']}" in prompt.completion
    assert "about probability at olympiad level" in prompt.chat[0]["content"]
    assert "Topic:" not in first_prompt("math").completion


def test_math_with_solution_keeps_solution_and_final_answer_apart(db):
    run_task("math", ["--with-solution"], db=db, backend="fake", limit=2)
    for row in rows(db, "math", full=True):
        output = row["output"]
        assert row["synthesized text"].startswith("A beekeeper has 12 hives")
        assert "Final answer" not in row["synthesized text"]
        assert output["solution"] == "12 × 18 = 216 kg of honey fills 216 / 0.5 = 432 jars, worth 432 × 7 = $3024."
        assert output["final_answer"] == "$3024"
    solve_requests = [r for r in FakeBackend.calls if r.prompt.endswith("Solution:")]
    assert len(solve_requests) == 2 and "A beekeeper has 12 hives" in solve_requests[0].prompt


def test_math_solution_without_final_answer_is_rejected(db):
    FakeBackend.responder = lambda r: "It is 3024 because 12 times 18 makes the weight." if r.prompt.endswith("Solution:") else scripted(r)
    summary = run_task("math", ["--with-solution"], db=db, backend="fake", limit=1)
    assert summary["items_rejected"] == 1
    assert rows(db, "math", full=True, include_all=True)[0]["error"] == "solution has no 'Final answer:' line"


def test_reasoning_style_picks_its_definition_and_demonstrations():
    prompt = first_prompt("reasoning", ["--style", "trick"])
    assert "catch" in prompt.completion.split("\n\n")[0]
    trick = [d for d in demonstrations("reasoning") if d["style"] == "trick"]
    logical = [d for d in demonstrations("reasoning") if d["style"] == "logical"]
    assert all(d["problem"] in prompt.completion for d in trick)
    assert not any(d["problem"] in prompt.completion for d in logical)


def test_instructions_two_turns_store_four_alternating_messages(db):
    run_task("instructions", ["--turns", "2"], db=db, backend="fake", limit=2)
    for row in rows(db, "instructions", full=True):
        messages = row["output"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert row["synthesized text"] == messages[0]["content"]
        assert all(m["content"] for m in messages)
    # The follow-up is written as the persona, after seeing the assistant's answer.
    follow_up = [r for r in FakeBackend.calls if r.prompt.endswith("User:") and "\nAssistant: Plant crocus" in r.prompt]
    assert follow_up
    persona = next(p for p in PERSONAS if p in follow_up[0].prompt)
    assert f"You are this person: {persona}" in follow_up[0].messages[-1]["content"]
    answers = [r for r in FakeBackend.calls if r.prompt.endswith("Assistant:")]
    assert answers[0].messages == [{"role": "user", "content": "What flowers should I plant near my hives so the bees "
                                                               "have forage from March to October?"}]


def test_instructions_one_turn_is_the_prompt_alone(db):
    run_task("instructions", [], db=db, backend="fake", limit=1)
    output = rows(db, "instructions", full=True)[0]["output"]
    assert output["messages"] == [{"role": "user", "content": output["synthesized text"]}]
    assert len(FakeBackend.calls) == 1


def test_knowledge_keeps_title_and_body_apart(db):
    run_task("knowledge", [], db=db, backend="fake", limit=1)
    row = rows(db, "knowledge", full=True)[0]
    title, body = row["output"]["title"], row["output"]["body"]
    assert title == "Why heather honey sets like jelly"
    assert body.startswith("Heather honey is thixotropic") and body.count("\n\n") == 2
    assert row["synthesized text"] == f"{title}\n\n{body}"


def test_tools_rows_are_the_released_tool_json(db):
    run_task("tools", [], db=db, backend="fake", limit=2)
    for row in rows(db, "tools"):
        tool = json.loads(row["synthesized text"])
        assert list(tool) == TOOL_KEYS
        assert all(set(arg) == {"type", "description"} for arg in tool["input_args"].values())
        assert set(tool["return"]) == {"type", "description"}
        assert all(isinstance(d, str) for d in tool["depend"])
    schema = FakeBackend.calls[0].json_schema
    assert list(schema["properties"]) == TOOL_KEYS and schema["required"] == TOOL_KEYS
    # The model writes input_args as a bounded list, which the row turns into the released mapping.
    assert schema["properties"]["input_args"]["maxItems"] == 4
    demo = demonstrations("tools")[0]["tool"]
    assert json.dumps(as_written(demo), ensure_ascii=False) in FakeBackend.calls[0].prompt


def test_tools_argument_named_twice_is_rejected(db):
    twice = {**as_written(TOOL), "input_args": [{"name": "kilograms", "type": "number", "description": "Weight."}] * 2}
    FakeBackend.responder = lambda r: json.dumps(twice)
    run_task("tools", [], db=db, backend="fake", limit=1)
    assert rows(db, "tools", full=True, include_all=True)[0]["error"] == "argument 'kilograms' given twice"


def test_tools_implement_stores_code_and_never_runs_it(db, tmp_path):
    run_task("tools", ["--implement"], db=db, backend="fake", limit=2)
    for row in rows(db, "tools", full=True):
        assert row["output"]["implementation"] == CODE.strip("\n")
    assert not (tmp_path / "EXECUTED").exists()
    code_request = next(r for r in FakeBackend.calls if r.prompt.endswith("```python\n"))
    assert '"function_name": "log_harvest"' in code_request.prompt and code_request.stop == ["```"]


def test_tools_implementation_must_define_the_function(db):
    FakeBackend.responder = lambda r: "def something_else():\n    pass\n" if r.prompt.endswith("```python\n") else scripted(r)
    summary = run_task("tools", ["--implement"], db=db, backend="fake", limit=1)
    assert summary["items_rejected"] == 1
    assert rows(db, "tools", full=True, include_all=True)[0]["error"] == "implementation does not define log_harvest()"


def test_tools_names_become_python_identifiers(db):
    FakeBackend.responder = lambda r: json.dumps({**TOOL, "function_name": "Log Harvest"})
    run_task("tools", [], db=db, backend="fake", limit=1)
    assert json.loads(rows(db, "tools")[0]["synthesized text"])["function_name"] == "log_harvest"


def test_npc_row_reads_like_personahub_and_keeps_the_structure(db):
    run_task("npc", [], db=db, backend="fake", limit=1)
    row = rows(db, "npc", full=True)[0]
    assert row["synthesized text"].startswith("Name: Tamsin Reed\nRole: Ferrywoman at Glasswater Ford\n")
    assert "Interaction with players: Sells passage" in row["synthesized text"]
    assert row["output"]["npc"] == NPC and row["output"]["world"] == "Ember Reach"
    request = FakeBackend.calls[0]
    assert "Kilnmouth" in request.prompt and list(request.json_schema["properties"]) == list(NPC)


def test_npc_bundled_and_custom_worlds(db, tmp_path):
    assert "Halcyon Drift" in first_prompt("npc", ["--world", "halcyon-drift"]).completion
    world = tmp_path / "saltmarsh.yaml"
    world.write_text("name: Saltmarsh Reach\npremise: >-\n  " + "A drowned coast of reed villages and tidal mills "
                     "where smugglers and river wardens argue over who owns the channels. " * 3
                     + "\nfactions:\n  - name: The Millers\n    description: Keep the tidal mills turning.\n"
                     "npc_roles:\n  - Reed cutter who knows the hidden channels\n", encoding="utf-8")
    prompt = first_prompt("npc", ["--world", str(world)])
    assert "# Saltmarsh Reach" in prompt.completion and "## NPC roles" in prompt.completion
    assert "- **The Millers**: Keep the tidal mills turning." in prompt.completion
    assert prompt.completion.endswith(f"World: Saltmarsh Reach\nPersona: {PERSONAS[3]}\nNPC:")
    run_task("npc", ["--world", str(world)], db=db, backend="fake", limit=1)
    assert rows(db, "npc", full=True)[0]["output"]["world"] == "Saltmarsh Reach"


def test_npc_edited_world_is_new_work(db, tmp_path):
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
def test_npc_bad_world_file_is_named_in_a_one_line_error(tmp_path, name, content, expected):
    world = tmp_path / name
    if content is not None:
        world.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        parse_task_options(resolve_task("npc"), ["--world", str(world)])
    message = str(caught.value)
    assert "\n" not in message and str(world) in message and expected in message


def test_npc_bad_world_file_exits_non_zero_without_traceback(db, tmp_path):
    world = tmp_path / "broken.yaml"
    world.write_text("name: Broken\nfactions: [unclosed\n", encoding="utf-8")
    result = cli("run", "--plugin", "npc", "--backend", "fake", "--db", db, "--world", world)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{world}: invalid YAML at line 3" in lines[0]


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
    row = rows(db, "reasoning", full=True, include_all=True)[0]
    assert row["status"] == "rejected" and row["error"].startswith(reason)
    assert len(FakeBackend.calls) == 2 and FakeBackend.calls[0].seed != FakeBackend.calls[1].seed
    with Store(db, read_only=True) as store:
        raw = json.loads(store.scalar("SELECT raw_output FROM generations WHERE task = 'reasoning'"))
    assert len(raw) == 2


def test_copying_a_demonstration_is_rejected(db):
    FakeBackend.responder = lambda r: " " + demonstrations("math")[1]["problem"]
    assert run_task("math", [], db=db, backend="fake", limit=1)["items_rejected"] == 1
    assert rows(db, "math", full=True, include_all=True)[0]["error"] == "copies a demonstration"


def test_invalid_structured_answers_are_rejected_with_the_field(db):
    FakeBackend.responder = lambda r: json.dumps({**NPC, "name": ""})
    run_task("npc", [], db=db, backend="fake", limit=1)
    assert rows(db, "npc", full=True, include_all=True)[0]["error"].startswith("invalid NPC JSON: name:")
    FakeBackend.responder = lambda r: json.dumps({**TOOL, "input_args": {"when": {"type": "date", "description": "a day"}}})
    run_task("tools", [], db=db, backend="fake", limit=1)
    assert rows(db, "tools", full=True, include_all=True)[0]["error"].startswith("invalid tool JSON: input_args.when.type:")


def test_demonstrations_are_valid_examples_of_their_own_schemas():
    """The few-shot examples must pass the checks the model's answers face, or they teach the wrong thing."""
    from personahub_npc import NPC as NPCModel, SCHEMA as NPC_SCHEMA
    from personahub_tools import SCHEMA as TOOL_SCHEMA, Tool

    for demo in demonstrations("npc"):
        NPCModel.model_validate(demo["npc"])
        assert all(len(demo["npc"][k]) <= s["maxLength"] for k, s in NPC_SCHEMA["properties"].items())
    for demo in demonstrations("tools"):
        tool = Tool.model_validate(demo["tool"])
        assert tool.model_dump(by_alias=True) == demo["tool"]
        assert f"def {tool.function_name}(" in demo["implementation"]
        assert len(demo["tool"]["description"]) <= TOOL_SCHEMA["properties"]["description"]["maxLength"]
    assert all(len(d["conversation"]) == 4 for d in demonstrations("instructions"))
    assert {d["style"] for d in demonstrations("reasoning")} == {"logical", "spatial", "trick"}


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


def test_knowledge_cut_at_the_token_limit_keeps_finished_paragraphs():
    task = resolve_task("knowledge")()
    cut = Completion(ANSWERS["Title:"] + "\nThe last paragraph never " + "ends and goes on " * 80, finish_reason="length")
    result = task.parse(cut, PERSONAS[3])
    assert result.fields["truncated"] is True
    assert result.fields["body"].endswith("costs more in the shop.")
    with pytest.raises(Rejected, match="runaway"):
        task.parse(Completion("Title" + " and on" * 200, finish_reason="length"), PERSONAS[3])


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


def test_npc_chat_form_carries_the_world_too():
    chat = first_prompt("npc", ["--world", "halcyon-drift"]).chat[0]["content"]
    assert chat.startswith("# Halcyon Drift") and "Tetherwrights" in chat and PERSONAS[3] in chat
