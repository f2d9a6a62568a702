"""Bad inputs around a run (issue 21, rows 2, 5, 6, 7 and 11), each as a new user met it: a filter a
task ignored, a failed run that exited 0 the second time, stored text read as markup or terminal codes,
a recipe that reached the network, hung or built huge prompts, and a store nobody could look into
while a run wrote it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.recipes import RecipeError, load_recipe
from personahub_core.status_file import live_status, status_path
from personahub_core.store import Store
from personahub_core.tasks import Prompt, Synthesis, Synthesizer
from personahub_core.testing import PERSONAS, FakeBackend, cli, import_texts, last_json, plugins_registered, run_task, write_jsonl


def one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


# -- row 2: --where is honoured by every task that selects personas, refused by the others -------------
def test_persona_to_persona_expands_only_the_selected_personas_and_their_descendants(personas_store):
    run_task("persona-to-persona", ["--hops", "2"], db=personas_store, backend="fake", where=["persona~nurse"])
    with Store(personas_store, read_only=True) as store:
        made = store.query_dicts("SELECT id, parent_id, hop FROM personas WHERE origin = 'expansion' ORDER BY hop")
        nurse = store.scalar("SELECT id FROM personas WHERE persona ILIKE '%nurse%' AND origin = 'import'")
    assert [(p["hop"], p["parent_id"]) for p in made] == [(1, nurse), (2, made[0]["id"])]


def test_where_is_a_usage_error_for_a_task_that_selects_no_personas(personas_store, personas_file):
    result = cli("run", "--plugin", "import", "--input", personas_file, "--where", "persona~nurse", "--db", "other.duckdb")
    assert "--where" in one_line_error(result, 2) and "import" in result.stderr
    assert not Path("other.duckdb").exists()
    with pytest.raises(UsageError, match="--where: task 'text-to-persona'"):
        run_task("text-to-persona", db=personas_store, backend="fake", where=["hop=0"])


# -- row 5: a run where nothing succeeded exits 1, the first time and every time ----------------------
def test_a_run_whose_every_item_fails_exits_1_every_time_and_is_recorded_failed(personas_store):
    FakeBackend.responder = lambda prompt: "?"  # no problem in it: every item is rejected
    first = run_task("math", db=personas_store, backend="fake")
    assert (first["status"], first["items_done"], first["items_failed"]) == ("failed", 0, len(PERSONAS))
    again = cli("run", "--plugin", "math", "--backend", "fake", "--db", personas_store, "--json", "-q")  # nothing new
    assert "--retry-failed" in one_line_error(again, 1) and last_json(again)["status"] == "failed"
    with Store(personas_store, read_only=True) as store:
        assert [r["status"] for r in store.runs() if r["task"] == "math"] == ["failed", "failed"]
    # One stored result is enough for a rerun that does nothing new to end well.
    FakeBackend.responder = None
    assert run_task("math", db=personas_store, backend="fake", retry_failed=True, limit=1)["status"] == "done"
    assert run_task("math", db=personas_store, backend="fake")["status"] == "done"


# -- row 6: stored text is data, never markup or terminal codes --------------------------------------
HOSTILE = ["A nurse who writes [/dim] in her notes.", "A [bold red]shouting[/bold red] sports coach.",
           "A sysadmin \x1b]0;pwned\x07 who retitles windows.", "A clerk who clears \x1b[2J\x1b[H screens."]


@pytest.mark.slow
def test_personas_with_markup_and_escape_codes_print_as_plain_text():
    import_texts(HOSTILE)
    result = cli("personas", "sample", "--n", "10", check=True)
    assert "[/dim]" in result.stdout and "[bold red]shouting[/bold red]" in result.stdout
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "A sysadmin  who retitles windows." in result.stdout and "A clerk who clears  screens." in result.stdout
    found = cli("personas", "search", "nurse notes", "--k", "4", "--backend", "fake", check=True)
    assert "[/dim]" in found.stdout and "\x1b" not in found.stdout
    shown = cli("personas", "show", "\x1b]0;pwned\x07[/dim]")  # an error line repeats what was asked for
    assert "\x1b" not in one_line_error(shown, 2) and "[/dim]" in shown.stderr


@pytest.mark.slow
def test_a_store_path_with_markup_works(personas_file):
    Path("w[").mkdir()
    db = "w[/]ore.duckdb"
    result = cli("run", "--plugin", "import", "--input", personas_file, "--db", db)
    assert result.returncode == 0 and "w[/]ore.duckdb" in result.stderr, result.stderr


# -- row 7: recipes are checked when they load --------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ('prompt = "Write {persona:>30000000}"', "prompt"),
    ('prompt = "Write {persona!r}"', "prompt"),
    ('prompt = "Write {persona}"\ntemperature = nan', "temperature"),
    ('prompt = "Write {persona}"\n[options]\nweight = inf', "options.weight"),
    ('prompt = "Write {persona}"\n[schema]\ntype = "object"\nproperties = { a = { "$ref" = "http://127.0.0.1:9/s.json" } }',
     "schema.properties.a.$ref"),
    ('prompt = "Write {persona}"\n[schema]\ntype = "object"\nproperties = { a = { "$ref" = "other.json" } }',
     "schema.properties.a.$ref"),
    ('prompt = "Write {persona}"\n[schema]\ntype = "string"\npattern = "^(a+)+$"', "schema.pattern"),
    ('prompt = "Write {persona}"\n[schema]\ntype = "number"\nmaximum = nan', "schema.maximum"),
])
def test_a_recipe_that_could_reach_out_hang_or_blow_up_is_refused_at_load(body, field):
    Path("r.toml").write_text(f'name = "r"\n{body}\n', encoding="utf-8")
    with pytest.raises(RecipeError, match=rf"^r\.toml: {field.replace('$', '[$]')}: "):
        load_recipe("r.toml")


def test_a_recipe_with_safe_references_and_patterns_loads():
    Path("r.toml").write_text(textwrap.dedent('''
        name = "r"
        prompt = "Write for {persona}"
        [schema]
        type = "object"
        properties = { when = { "$ref" = "#/$defs/date" }, pet = { type = "string", pattern = "^(cat|dog)$" } }
        "$defs" = { date = { type = "string", pattern = "^\\\\d{4}(-\\\\d{2}){2}$" } }
    '''), encoding="utf-8")
    assert load_recipe("r.toml").schema["properties"]["when"] == {"$ref": "#/$defs/date"}


def test_a_demonstration_with_nan_is_refused():
    write_jsonl(Path("ex.jsonl"), [])
    Path("ex.jsonl").write_text('{"persona": "A baker.", "output": NaN}\n', encoding="utf-8")
    Path("r.toml").write_text('name = "r"\nprompt = "Rate {persona}"\nexamples = "ex.jsonl"\n[schema]\ntype = "number"\n',
                              encoding="utf-8")
    with pytest.raises(RecipeError, match=r"ex\.jsonl:1: invalid JSON: NaN is not a finite number"):
        load_recipe("r.toml")


# -- row 11: while a run writes, runs and stats say how far it has got --------------------------------
HOLDER = """
import sys
from personahub_core.runner import RunStats
from personahub_core.status_file import StatusFile
from personahub_core.store import Store

with Store(sys.argv[1]) as store:  # holds DuckDB's write lock, as a run does
    status = StatusFile(store.path, "20261205-120000-abcdef", "math")
    status.expect(10)
    status.write(RunStats(items_done=3, items_failed=1))
    print("ready", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.slow
def test_a_locked_store_answers_runs_and_stats_from_the_status_file(personas_store):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(personas_store)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        runs = cli("runs", "--db", personas_store)
        assert runs.returncode == 0 and "a run is writing: 3 of 10 done, 1 failed, ETA" in runs.stdout, runs.stderr
        assert "a run is writing: 3 of 10 done" in cli("stats", "--db", personas_store, check=True).stdout
        [running] = json.loads(cli("runs", "--json", "--db", personas_store, check=True).stdout)
        assert (running["status"], running["task"], running["items_done"], running["items_total"]) == ("running", "math", 3, 10)
        export = cli("export", "personas", "--out", "p.jsonl", "--db", personas_store)
        assert "in use by another run" in one_line_error(export, 1) and "a run is writing: 3 of 10 done" in export.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not status_path(personas_store).exists() or live_status(personas_store) is None


def test_a_status_file_left_by_a_dead_process_is_ignored(personas_store):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    status_path(personas_store).write_text(json.dumps({"pid": int(gone.stdout), "run_id": "r", "task": "math",
                                                       "items_done": 1, "items_failed": 0, "items_total": 2}))
    assert live_status(personas_store) is None


class Watched(Synthesizer):
    """A one-step synthesizer that looks at its own status file once its items are stored."""

    name = "watched"
    seen: list = []

    def prompt(self, persona: str) -> Prompt:
        return Prompt(completion=f"Persona: {persona}\nAnswer:", chat=[{"role": "user", "content": persona}], max_tokens=16)

    def parse(self, completion, persona: str) -> Synthesis:
        return Synthesis(completion.text)

    def run(self, ctx) -> None:
        super().run(ctx)
        self.seen.append(live_status(ctx.core_store.path))


class WatchedPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Watched)


def test_the_writer_keeps_the_status_file_while_the_run_goes_and_removes_it_at_the_end(personas_store):
    with plugins_registered(WatchedPlugin()):
        summary = run_task("watched", db=personas_store, backend="fake")
    [status] = Watched.seen
    assert (status["run_id"], status["task"], status["items_done"], status["items_total"]) == \
        (summary["run_id"], "watched", len(PERSONAS), len(PERSONAS))
    assert status["eta_seconds"] == 0 and status["items_per_second"] > 0
    assert not status_path(personas_store).exists()
