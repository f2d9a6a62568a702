"""The runner with the deterministic fake backend: resume, failures kept, batching, cache, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from personahub_core.api import dry_run, parse_task_options
from personahub_core.errors import UsageError
from personahub_core.executors import LocalExecutor
from personahub_core.hookspecs import hookimpl
from personahub_core.settings import NoOptions
from personahub_core.store import Store
from personahub_core.tasks import Context, Prompt, Rejected, Synthesis, Synthesizer, WorkItem
from personahub_core.testing import FakeBackend, plugins_registered, run_task

from personahub_core.testing import PERSONAS, cli
from fault_server import FaultServer


class Echo(Synthesizer):
    """Asks for one line about the persona; rejects 'BAD' answers, crashes on 'BOOM'."""

    name = "echo"
    template = "echo"
    row_description = "echo test"

    def prompt(self, persona):
        return Prompt(completion=f"Persona: {persona}\nLine:", max_tokens=16, stop=["\n"])

    def parse(self, completion, persona):
        text = completion.text
        if "BAD" in text:
            raise Rejected("said BAD")
        if "BOOM" in text:
            raise RuntimeError("parser exploded")
        return Synthesis(text=text.strip(), fields={"length": len(text)})


class EchoPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Echo)


@pytest.fixture
def echo(personas_file):
    with plugins_registered(EchoPlugin()):
        run_task("import", ["--input", str(personas_file)])
        yield


def generations(task="echo"):
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query_dicts("SELECT * FROM generations WHERE task = ? ORDER BY key", [task])


def test_resume_does_only_missing_work_and_never_writes_twice(echo):
    first = run_task("echo", backend="fake", limit=2)
    assert first["items_done"] == 2
    second = run_task("echo", backend="fake")
    assert second["items_done"] == len(PERSONAS) - 2 and second["items_skipped"] == 2
    third = run_task("echo", backend="fake")
    assert third["items_done"] == 0 and third["items_skipped"] == len(PERSONAS)
    rows = generations()
    assert len(rows) == len(PERSONAS) == len({r["key"] for r in rows})


def test_rejected_answers_are_retried_once_then_stored_with_raw_output(echo):
    FakeBackend.responder = lambda req: "BAD answer"
    summary = run_task("echo", backend="fake", limit=1)
    assert summary["items_failed"] == 1 and summary["items_rejected"] == 1
    (row,) = generations()
    assert row["status"] == "rejected" and row["error"] == "said BAD"
    assert json.loads(row["raw_output"]) == ["BAD answer", "BAD answer"]  # two attempts, both kept
    seeds = {c.seed for c in FakeBackend.calls}
    assert len(seeds) == 2  # the retry used a fresh seed


def test_plugin_exception_fails_the_item_not_the_run(echo):
    FakeBackend.responder = lambda req: "BOOM" if "nurse" in req.completion else "fine line"
    summary = run_task("echo", backend="fake")
    assert summary["items_done"] == len(PERSONAS) - 1 and summary["items_failed"] == 1
    failed = [r for r in generations() if r["status"] == "failed"]
    assert "parser exploded" in failed[0]["error"]


def test_retry_failed_reattempts_in_place_with_fresh_seeds(echo):
    FakeBackend.responder = lambda req: "BAD"
    run_task("echo", backend="fake", limit=2)
    first = {(c.completion, c.seed) for c in FakeBackend.calls}
    FakeBackend.calls.clear()
    FakeBackend.responder = lambda req: "good now"
    summary = run_task("echo", backend="fake", retry_failed=True)
    rows = generations()
    assert all(r["status"] == "ok" for r in rows) and len(rows) == len(PERSONAS)
    retried = [r for r in rows if r["attempts"] == 2]
    assert len(retried) == 2 and summary["items_done"] == len(PERSONAS)  # 2 retried + 4 new
    # The same prompts again, but never with a seed they already failed with.
    again = [(c.completion, c.seed) for c in FakeBackend.calls if c.completion in {p for p, _ in first}]
    assert len(again) == 2 and not first & set(again)


def test_another_backend_or_model_does_the_work_again(echo):
    n = len(PERSONAS)
    assert run_task("echo", backend="fake")["items_done"] == n
    assert run_task("echo", backend="fake")["items_skipped"] == n  # the same model: already stored
    with FaultServer() as server:
        other = run_task("echo", backend="openai", base_url=server.url, model="test-model")
    assert other["items_done"] == n and other["items_skipped"] == 0
    rows = generations()
    assert sorted(r["model"] for r in rows) == ["fake"] * n + ["test-model"] * n
    assert len({r["key"] for r in rows}) == 2 * n


class Tallying(LocalExecutor):
    """An executor that wraps the local path, as one that stores rows its own way (Ray) replaces it."""

    name = "tallying"
    handed: list[tuple[str, int]] = []

    def run_items(self, task, ctx, items, label, budget):
        items = list(items)
        Tallying.handed.append((task.name, len(items)))
        return super().run_items(task, ctx, items, label, budget)


class TallyingPlugin:
    @hookimpl
    def register_executors(self, register):
        register(Tallying)


def test_every_generative_task_reaches_its_executor_through_run_items(personas_file):
    Tallying.handed = []
    with plugins_registered(EchoPlugin(), TallyingPlugin()):
        run_task("import", ["--input", str(personas_file)])
        assert run_task("echo", backend="fake", executor="tallying")["items_done"] == len(PERSONAS)
        # Every work item is handed over, stored ones too: skipping them is the executor's job.
        assert run_task("echo", backend="fake", executor="tallying")["items_skipped"] == len(PERSONAS)
    assert Tallying.handed == [("echo", len(PERSONAS))] * 2


class Stages(Echo):
    """Its personas in two stages that share one budget, as a task with hops does: the budget goes to
    each stage and what is left comes back; a dry run plans the first stage."""

    name = "stages"
    planned_note = "first stage only"
    seen: list = []

    def stage(self, ctx: Context, first: bool):
        for persona in list(ctx.select_personas())[0 if first else 1::2]:
            yield WorkItem(key=self.item_key(ctx, persona["id"]), input_id=persona["id"], data={"persona": persona["persona"]})

    def planned_items(self, ctx: Context):
        return self.stage(ctx, first=True)

    def run(self, ctx: Context) -> None:
        budget = ctx.run_generative(self, self.stage(ctx, first=True), budget=ctx.limit)
        stored = len(list(ctx.select_rows(self.name)))  # the first stage's rows, stored before the second starts
        Stages.seen.append((budget, stored, ctx.run_generative(self, self.stage(ctx, first=False), budget=budget), ctx.limit))


class StagesPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Stages)


def test_the_budget_is_passed_to_each_stage_and_what_is_left_comes_back(echo):
    Stages.seen = []
    with plugins_registered(EchoPlugin(), StagesPlugin()):
        plan = dry_run("stages", [], backend="fake")
        assert run_task("stages", backend="fake", limit=4)["items_done"] == 4
        assert run_task("stages", backend="fake")["items_done"] == 2
    # 3 personas in each stage: 1 of the 4 is left for the second; --limit itself is never changed.
    assert Stages.seen == [(1, 3, 0, 4), (None, 4, None, None)]  # the rerun finds the second stage's 1 row too
    assert plan["stages"][0]["items_to_run"] == 3 and plan["stages"][0]["note"] == "first stage only"


def test_a_task_without_options_takes_none(echo):
    class Bare(Synthesizer):
        name = "bare"

    assert Bare.Options is NoOptions and FakeBackend.Options is NoOptions
    with pytest.raises(UsageError, match="task 'bare' has no option --colour"):
        parse_task_options(Bare, ["--colour", "red"])


def test_same_seed_same_requests_and_seed_changes_them(echo, personas_file):
    def calls_in_fresh_store(db, **flags):
        run_task("import", ["--input", str(personas_file)], db=db)
        FakeBackend.calls.clear()
        run_task("echo", backend="fake", limit=3, db=db, **flags)
        return [(c.completion, c.seed) for c in FakeBackend.calls]

    first = calls_in_fresh_store("a.duckdb")
    assert calls_in_fresh_store("b.duckdb") == first
    assert [s for _, s in calls_in_fresh_store("c.duckdb", seed=9)] != [s for _, s in first]


def test_cache_answers_identical_calls_without_the_backend(echo):
    run_task("echo", backend="fake", limit=2)
    with Store("personahub.duckdb") as store:  # forget the work, keep the cache
        store.con.execute("DELETE FROM generations")
    FakeBackend.calls.clear()
    summary = run_task("echo", backend="fake", limit=2)
    assert summary["items_done"] == 2 and summary["cached_calls"] == 2 and FakeBackend.calls == []


def test_synthesis_rows_carry_provenance(echo):
    run_task("echo", backend="fake", limit=1, seed=5, temperature=0.3)
    (row,) = generations()
    assert row["template"] == "echo" and row["model"] == "fake" and row["seed"] == 5
    sampling = json.loads(row["sampling"])
    assert sampling["temperature"] == 0.3 and sampling["max_tokens"] == 16
    output = json.loads(row["output"])
    assert output["description"] == "echo test" and output["length"] > 0


def test_where_filter_selects_personas_and_binds_values_safely(echo):
    summary = run_task("echo", backend="fake", where=["persona~nurse"])
    assert summary["items_done"] == 1
    hostile = "x'; DROP TABLE personas; --"
    assert run_task("echo", backend="fake", where=[f"persona={hostile}"])["items_done"] == 0
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.count("personas") == len(PERSONAS)


def test_where_rejects_unknown_fields_and_operators(echo):
    from personahub_core.errors import UsageError

    with pytest.raises(UsageError, match="unknown field 'password'"):
        run_task("echo", backend="fake", where=["password=1"])
    with pytest.raises(UsageError, match="whole number"):
        run_task("echo", backend="fake", where=["hop~1"])


SLOW_TASK = r'''
import os, time, sys
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Prompt, Synthesis, Synthesizer
from personahub_core.testing import FakeBackend

class Slow(Synthesizer):
    name = "slow"
    def prompt(self, persona):
        return Prompt(completion=persona, max_tokens=8)
    def parse(self, completion, persona):
        return Synthesis(text=completion.text)

def slow_answer(req):
    with open("calls.log", "a") as log:  # lets the test see progress without the store's lock
        log.write("call\n")
    with open("calls.log") as log:
        calls = len(log.read().splitlines())
    if calls > int(os.environ.get("BLOCK_AFTER", "1000")):
        time.sleep(600)  # the item in flight when the signal comes: the run cannot finish before it
    return "slow answer"

FakeBackend.responder = slow_answer

class P:
    @hookimpl
    def register_tasks(self, register):
        register(Slow)

from personahub_core import plugins
plugins._registry = plugins.load_plugins(extra=[P()])
from personahub_core import runner
runner.FLUSH_EVERY_ROWS = 1
from personahub_core.cli import main
sys.argv = ["personahub", "run", "--plugin", "slow", "--backend", "fake", "--batch-size", "1", "-q"]
main()
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.slow
def test_interrupted_run_keeps_finished_items_and_resumes_without_duplicates(tmp_path, personas_file, sig):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    script = tmp_path / "slow.py"
    script.write_text(SLOW_TASK)
    # Items are written one by one; the 4th call blocks, so exactly 3 are stored when the signal comes.
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BLOCK_AFTER": "3"})
    log = tmp_path / "calls.log"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 4):
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # the blocked call sleeps for minutes: never leave it behind when the test fails
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM generations") == 3
        (run,) = [r for r in store.runs() if r["task"] == "slow"]
    # Counts are written as the run goes; a killed run's process is gone, and the store says so.
    assert (run["status"], run["items_done"]) == ("interrupted" if sig == signal.SIGINT else "died", 3)
    rerun = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    with Store("personahub.duckdb", read_only=True) as store:
        keys = [r[0] for r in store.query("SELECT key FROM generations")]
        statuses = store.query("SELECT status, items_done FROM runs WHERE task = 'slow' ORDER BY started_at")
    assert len(keys) == len(set(keys)) == len(PERSONAS)
    first = "interrupted" if sig == signal.SIGINT else "died"  # the rerun marked the dead run as it started
    assert statuses == [(first, 3), ("done", len(PERSONAS) - 3)]


LONG_QUERY_TASK = r'''
import sys
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import PersonaSource

class LongQuery(PersonaSource):
    name = "long-query"
    uses_backend = False

    def run(self, ctx):
        open("ready", "w").close()
        ctx.core_store.scalar("SELECT sum(i % 7) FROM range(100000000000) r(i)")  # minutes: Ctrl-C lands inside it

class P:
    @hookimpl
    def register_tasks(self, register):
        register(LongQuery)

from personahub_core import plugins
plugins._registry = plugins.load_plugins(extra=[P()])
from personahub_core.cli import main
sys.argv = ["personahub", "run", "--plugin", "long-query", "-q"]
main()
'''


@pytest.mark.slow
def test_ctrl_c_inside_a_duckdb_query_ends_the_run_as_interrupted(tmp_path):
    # DuckDB reports a Ctrl-C during a query as RuntimeError("Query interrupted"), not KeyboardInterrupt.
    script = tmp_path / "long.py"
    script.write_text(LONG_QUERY_TASK)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "ready").exists():
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the query (it runs for minutes); earlier would end the same way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # the query runs for minutes: never leave it behind when the test fails
    assert proc.returncode == 130 and "interrupted" in err and "internal error" not in err, err
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.scalar("SELECT status FROM runs WHERE task = 'long-query'") == "interrupted"
