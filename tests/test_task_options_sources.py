"""A task's options come from the command line, then PERSONAHUB_<TASK>__<OPTION>, then [tasks.<task>] in
personahub.toml, then the Options model's default; each place is named when its value is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from personahub_core.api import checked
from personahub_core.plugins import get_registry
from personahub_core.recipes import load_recipe
from personahub_core.store import Store
from personahub_core.task_option_sources import check_task_tables
from personahub_core.testing import PERSONAS, cli, run_task, write_jsonl

MATH_TABLE = '[tasks.math]\ntopic = "geometry"\nwith-solution = true\n'


def math_options(task_args: list[str] | None = None, options: dict | None = None):
    task, _, _ = checked("math", task_args or [], None, None, {}, options)
    return task.options


def test_a_tasks_table_in_personahub_toml_gives_the_tasks_options():
    Path("personahub.toml").write_text(MATH_TABLE)
    options = math_options()
    assert (options.topic, options.with_solution, options.difficulty) == ("geometry", True, "any")


def test_the_environment_beats_the_file_and_the_command_line_beats_both(monkeypatch):
    Path("personahub.toml").write_text(MATH_TABLE)
    monkeypatch.setenv("PERSONAHUB_MATH__TOPIC", "probability")
    monkeypatch.setenv("personahub_math__difficulty", "high school")  # any case, as settings
    assert (math_options().topic, math_options().difficulty) == ("probability", "high school")
    flagged = math_options(["--topic", "finance", "--no-with-solution"])
    assert (flagged.topic, flagged.with_solution, flagged.difficulty) == ("finance", False, "high school")
    given = math_options(options={"topic": "algebra"})  # personahub.run(options=...) takes the flag's place
    assert (given.topic, given.with_solution) == ("algebra", True)


def test_environment_values_are_typed_as_the_flag_takes_them(monkeypatch):
    """Task names with '-' have '_' in the variable; a list is comma separated, as after its flag."""
    monkeypatch.setenv("PERSONAHUB_PERSONA_TO_PERSONA__HOPS", "2")
    monkeypatch.setenv("PERSONAHUB_PERSONA_TO_PERSONA__RELATIONS", "patient, colleague")
    task, _, _ = checked("persona-to-persona", [], None, None, {})
    assert (task.options.hops, task.options.relations) == (2, ["patient", "colleague"])
    monkeypatch.setenv("PERSONAHUB_MATH__WITH_SOLUTION", "1")
    assert math_options().with_solution is True


def test_a_personahub_section_holds_the_tasks_tables_too():
    Path("personahub.toml").write_text("[personahub]\nbatch_size = 4\n\n[personahub.tasks.persona-to-persona]\nper-persona = 2\n")
    task, settings, _ = checked("persona-to-persona", [], None, None, {})
    assert (task.options.per_persona, settings.batch_size) == (2, 4)


def test_a_recipe_reads_the_table_of_its_name_and_other_tables_warn(tmp_path):
    recipe = tmp_path / "haiku.toml"
    recipe.write_text('name = "haiku"\nprompt = "A haiku about {topic} for {persona}."\n[options]\ntopic = "the sea"\n')
    Path("personahub.toml").write_text('[tasks.haiku]\ntopic = "mountains"\n\n[tasks.maths]\ntopic = "algebra"\n')
    task, _, _ = checked(str(recipe), [], None, None, {})
    assert task.options.topic == "mountains"
    warnings = check_task_tables(get_registry().tasks, load_recipe(recipe))
    assert warnings == ["personahub.toml: [tasks.maths] names no installed task; its options are not used"]
    assert len(check_task_tables(get_registry().tasks)) == 2  # without the recipe, its table names nothing installed


def test_an_option_given_by_the_environment_makes_the_same_work_keys_as_by_flag(tmp_path, monkeypatch):
    """A resumed run finds its rows whichever place gave the option: the keys are byte-identical."""
    personas = write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in PERSONAS[:3]])
    by_flag, by_env = tmp_path / "flag.duckdb", tmp_path / "env.duckdb"
    for db in (by_flag, by_env):
        run_task("import", ["--input", str(personas)], db=db)
    run_task("math", ["--topic", "geometry"], db=by_flag, backend="fake")
    monkeypatch.setenv("PERSONAHUB_MATH__TOPIC", "geometry")
    run_task("math", [], db=by_env, backend="fake")

    def stored(db):
        with Store(db, read_only=True) as store:
            keys = store.query("SELECT key FROM generations WHERE task = 'math' ORDER BY key")
            options = store.query("SELECT options FROM runs WHERE task = 'math'")
        return keys, options

    keys, options = stored(by_flag)
    assert len(keys) == 3 and stored(by_env) == (keys, options)
    assert json.loads(options[0][0])["topic"] == "geometry"


@pytest.mark.parametrize("env, toml, message", [
    ({"PERSONAHUB_MATH__WITH_SOLUTION": "maybe"}, "",
     "error: environment: PERSONAHUB_MATH__WITH_SOLUTION: Input should be a valid boolean, unable to interpret input "
     "(got 'maybe')"),
    ({"PERSONAHUB_MATH__TOPIK": "geometry"}, "",
     "error: environment: unknown setting 'PERSONAHUB_MATH__TOPIK' (task 'math' has options: mode, topic, difficulty, "
     "with_solution)"),
    ({}, '[tasks.math]\ndifficulty = "hard"\n',
     "error: personahub.toml: tasks.math.difficulty: Input should be 'any', 'grade school', 'high school', "
     "'competition' or 'olympiad' (got 'hard')"),
    ({}, '[tasks.math]\ntopik = "geometry"\n',
     "error: personahub.toml: unknown setting 'tasks.math.topik' (task 'math' has options: mode, topic, difficulty, "
     "with_solution)"),
    ({}, '[tasks.minhash]\nthreshhold = 0.5\n',  # a typo in another installed task's table is an error too
     "error: personahub.toml: unknown setting 'tasks.minhash.threshhold' (task 'minhash' has options: threshold, "
     "num_perm, bands, rows, ngram, fresh)"),
    ({}, "tasks = 3\n", 'error: personahub.toml: tasks: expected a table per task, e.g. [tasks.math] with topic = "geometry"'),
])
def test_a_bad_task_option_from_the_environment_or_file_is_one_line_exit_2(tmp_path, personas_file, env, toml, message):
    Path("personahub.toml").write_text(toml)
    result = cli("run", "--plugin", "math", "--backend", "fake", "--db", "new.duckdb", env=env)
    assert result.returncode == 2 and result.stderr.strip() == message
    assert not (tmp_path / "new.duckdb").exists()  # checked before anything is written


def test_config_shows_a_tasks_options_with_where_each_came_from():
    Path("personahub.toml").write_text(MATH_TABLE + "\n[tasks.maths]\ntopic = \"algebra\"\n")
    result = cli("config", "--plugin", "math", "--json", env={"PERSONAHUB_MATH__TOPIC": "probability"}, check=True)
    assert json.loads(result.stdout)["task_options"] == {
        "mode": {"value": "persona-few-shot", "from": "default"},
        "topic": {"value": "probability", "from": "env PERSONAHUB_MATH__TOPIC"},
        "difficulty": {"value": "any", "from": "default"},
        "with_solution": {"value": True, "from": "personahub.toml"},
    }
    assert "warning: personahub.toml: [tasks.maths] names no installed task" in result.stderr
    shown = cli("plugins", "show", "math", "--json", check=True).stdout
    assert json.loads(shown)["environment_prefix"] == "PERSONAHUB_MATH__"
    assert json.loads(shown)["config_table"] == "tasks.math"


def test_dedup_steps_read_their_tables_before_the_store_is_opened(tmp_path):
    Path("personahub.toml").write_text("[tasks.minhash]\nthreshold = 1.5\n")
    result = cli("dedup", "--skip", "embedding", "--db", "new.duckdb")
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: dedup minhash: personahub.toml: tasks.minhash.threshold: Input should be less than or equal to 1 "
        "(got '1.5')")
    assert not (tmp_path / "new.duckdb").exists()
