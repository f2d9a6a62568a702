"""The Ray executor and MinHash on Ray, on one local Ray session shared by the whole module.

The executor must be a drop-in for the local one: the same work items give the same keys, personas
and rows, a resumed run does only what is missing. The rows travel as Parquet shards written by the
actors and merged by the store; the driver only counts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import ray.data
from ray import cloudpickle

from personahub_core import pending, ray_executor, shards
from personahub_core.hookspecs import hookimpl
from personahub_core.ingest import ingest_paths
from personahub_core.plugins import get_registry
from personahub_core.ray_executor import RayExecutorError, actor_plan, check_reachable, items_table, rows_to_items
from personahub_core.runner import Writer
from personahub_core.sample_data import corpus_path
from personahub_core.settings import Settings
from personahub_core.shards import ShardSpec, ShardWriter, merge_shards
from personahub_core.store import Store
from personahub_core.tasks import Prompt, Synthesis, Synthesizer, WorkItem
from personahub_core.testing import plugins_registered, run_task

from personahub_core.testing import cli, write_jsonl

# Ray Data copies its context into each job and trips over its own deprecated settings while doing so.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"), pytest.mark.ray,
              pytest.mark.slow]  # a module-wide Ray instance starts for every test here


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    """One small local Ray for every test here; the executor reuses a Ray that is already up."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024**2, configure_logging=False)
    # Tasks defined in this file travel to the actors by value: workers cannot import test modules.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def new_store(name: str) -> str:
    db = f"{name}.duckdb"
    with Store(db) as store:
        ingest_paths(store, [corpus_path()], quiet=True)
    return db


def stored(db: str) -> dict:
    """Every generation and persona by key, with what a run may not lose: raw output, error, attempts."""
    with Store(db, read_only=True) as store:
        return {
            "generations": {r.pop("key"): r for r in store.query_dicts(
                "SELECT key, task, status, output, raw_output, error, attempts, input_id, prompt_tokens, "
                "completion_tokens FROM generations")},
            "personas": {r["id"]: (r["persona"], r["generation_key"]) for r in store.query_dicts(
                "SELECT id, persona, generation_key FROM personas")},
        }


def test_ray_gives_the_same_keys_personas_and_rows_as_local_and_resumes(personas_file):
    local, distributed = new_store("local"), new_store("ray")
    run_task("text-to-persona", backend="fake", limit=8, db=local, executor="local")
    # An interrupted ray run (3 items), then the rest: the keys make the two runs add up to one.
    first = run_task("text-to-persona", backend="fake", limit=3, db=distributed, executor="ray")
    rest = run_task("text-to-persona", backend="fake", limit=5, db=distributed, executor="ray")
    assert (first["items_done"], rest["items_done"], rest["items_skipped"]) == (3, 5, 3)
    assert (first["personas_added"], rest["personas_added"]) == (3, 5)
    assert any(n.startswith("ray: 5 items on") for n in rest["notes"])

    # Math over the 14 personas is done; knowledge rejects the fake answer (no title and body). Both
    # kinds of row must come through the shards as they do locally.
    for db in (local, distributed):
        run_task("import", ["--input", str(personas_file)], db=db)
    for task in ("math", "knowledge"):
        run_task(task, backend="fake", db=local, executor="local")
    math = run_task("math", backend="fake", db=distributed, executor="ray")
    knowledge = run_task("knowledge", backend="fake", db=distributed, executor="ray")
    assert (math["items_done"], math["items_rejected"], knowledge["items_done"], knowledge["items_rejected"]) == (14, 0, 0, 14)
    assert math["completion_tokens"] > 0

    a, b = stored(local), stored(distributed)
    assert len(a["personas"]) == 14 and len(a["generations"]) == 36
    assert a == b
    rejected = [g for g in b["generations"].values() if g["status"] == "rejected"]
    assert len(rejected) == 14 and all(g["error"] and json.loads(g["raw_output"]) for g in rejected)

    again = run_task("math", backend="fake", db=distributed, executor="ray")
    assert (again["items_done"], again["items_failed"], again["items_skipped"]) == (0, 0, 14)
    assert stored(distributed) == b
    assert not Path(f"{distributed}.shards").exists()  # every shard merged, and nothing left behind


def test_the_driver_writes_no_rows_and_counts_what_the_shards_added(personas_file, monkeypatch):
    run_task("import", ["--input", str(personas_file)])

    def no_rows_in_the_driver(*args, **kwargs):
        raise AssertionError("the driver wrote rows; under Ray only the actors write them (as shards)")

    monkeypatch.setattr(Writer, "add", no_rows_in_the_driver)
    monkeypatch.setattr(Store, "write_generations", no_rows_in_the_driver)
    summary = run_task("math", backend="fake", executor="ray", batch_size=2)
    with Store("personahub.duckdb", read_only=True) as store:
        rows = store.query("SELECT status, count(*), sum(completion_tokens) FROM generations GROUP BY status")
        run = store.query("SELECT items_done, items_failed, completion_tokens FROM runs WHERE id = ?",
                          [summary["run_id"]])
    assert rows == [("ok", 6, summary["completion_tokens"])]
    assert summary["items_done"] == 6 and run == [(6, 0, summary["completion_tokens"])]


def test_shards_left_by_a_driver_that_died_are_merged_before_work_is_chosen(personas_file, monkeypatch, tmp_path):
    """The driver dies after the actors wrote their shards and before it merged any of them. The shards
    go to a folder named by a URI, as an object store would be."""
    run_task("import", ["--input", str(personas_file)])
    elsewhere = tmp_path / "elsewhere"
    real_merge = ray_executor.merge_shards
    monkeypatch.setattr(ray_executor, "merge_shards", lambda *args, **kwargs: {})
    died = run_task("math", backend="fake", executor="ray", limit=4, ray_shards=elsewhere.as_uri())
    assert died["items_done"] == 0 and len(list(elsewhere.rglob("*.parquet"))) >= 1
    assert not Path("personahub.duckdb.shards").exists()
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.count("generations") == 0

    monkeypatch.setattr(ray_executor, "merge_shards", real_merge)
    resumed = run_task("math", backend="fake", executor="ray", ray_shards=elsewhere.as_uri())
    assert (resumed["items_skipped"], resumed["items_done"]) == (4, 2)  # the dead run's 4, then the rest
    with Store("personahub.duckdb", read_only=True) as store:
        keys = store.query("SELECT count(*), count(DISTINCT key) FROM generations")
        counts = dict(store.query("SELECT id, items_done FROM runs WHERE task = 'math'"))
    assert keys == [(6, 6)]
    assert counts == {died["run_id"]: 4, resumed["run_id"]: 2}  # the dead run's count came from its shards
    assert not elsewhere.exists()


def row(key: str, status: str, run_id: str, output: dict | None = None) -> dict:
    return {"key": key, "task": "t", "input_id": "p", "status": status, "output": output, "raw_output": ["raw " + key],
            "error": None if status == "ok" else "bad", "template": "t",
            "template_version": "1", "options": {}, "model": "fake", "sampling": {"seed": 1}, "seed": 0,
            "prompt_tokens": 3, "completion_tokens": 5, "seconds": 0.1, "run_id": run_id}


def write_shard(store: Store, root: str, run_id: str, rows: list[dict], personas: list[dict] = ()) -> None:
    ShardWriter(ShardSpec.for_run(store, root, run_id)).write(rows, list(personas))


def test_a_shard_merged_twice_adds_nothing_and_a_retried_failure_replaces_its_row(tmp_path):
    """No Ray here: the store's side of the shards, keyed as Store.write_generations keys its rows."""
    root = str(tmp_path / "shards")
    with Store("personahub.duckdb") as store:
        store.write_generations([row("a", "ok", "r0", {"x": 1}), row("b", "failed", "r0")], [])
        persona = {"id": "pc", "persona": "A nurse", "origin": "expansion", "generation_key": "c", "run_id": "r1",
                   "hop": 1, "task": "t", "model": "fake"}
        write_shard(store, root, "r1", [row("a", "failed", "r1"), row("b", "ok", "r1", {"x": 2}),
                                        row("c", "ok", "r1", {"x": 3}), row("c", "ok", "r1", {"x": 3})], [persona])
        kept = tmp_path / "copy"
        shutil.copytree(root, kept)
        added = merge_shards(store, root)["r1"]
        assert (added.done, added.failed, added.personas) == (2, 0, 1)
        assert not Path(root, "r1").exists()
        # The driver died after the commit and before the delete: the same files come back.
        shutil.copytree(kept, root, dirs_exist_ok=True)
        assert merge_shards(store, root)["r1"].items == 0
        rows = {r["key"]: (r["status"], r["run_id"], r["attempts"], json.loads(r["output"] or "null"))
                for r in store.query_dicts("SELECT * FROM generations")}
        personas = store.query("SELECT id, persona, hop, generation_key FROM personas")
    assert rows == {"a": ("ok", "r0", 1, {"x": 1}),  # a done row is never replaced
                    "b": ("ok", "r1", 2, {"x": 2}),  # a failure is, by another run, once
                    "c": ("ok", "r1", 1, {"x": 3})}  # a key written twice goes in once
    assert personas == [("pc", "A nurse", 1, "c")]


def test_wide_shards_merge_under_the_automatic_memory_cap(tmp_path):
    """Four files of 10,000 rows with 2 KB outputs (one merge, ~80 MB of rows) into a small store under
    its automatic cap: the merge makes room for its rows by the files' own byte count (with 64 MiB it
    ran out of memory)."""
    root = str(tmp_path / "shards")
    with Store("personahub.duckdb") as store:
        store.limit_memory(None)
        for part in range(4):
            write_shard(store, root, "r1", [row(f"k{part}-{i}", "ok", "r1", {"text": f"{i} {part} " + "words " * 340})
                                            for i in range(10_000)])
        added = merge_shards(store, root)["r1"]
        assert (added.done, store.count("generations")) == (40_000, 40_000)


def test_personas_of_a_part_whose_rows_were_never_written_are_left_out(tmp_path):
    """An actor killed between a part's persona file and its generation file did not finish the item."""
    root = str(tmp_path / "shards")
    with Store("personahub.duckdb") as store:
        persona = {"id": "pz", "persona": "A pilot", "origin": "expansion", "generation_key": "z", "run_id": "r1"}
        write_shard(store, root, "r1", [row("z", "ok", "r1")], [persona])
        for part in Path(root, "r1", "generations").iterdir():
            part.unlink()
        assert merge_shards(store, root) == {"r1": shards.Tally()}
        assert (store.count("generations"), store.count("personas")) == (0, 0)
    assert not Path(root, "r1").exists()


class WordCount(Synthesizer):
    """A synthesizer defined outside any installed plugin, with options that change its prompt."""

    name = "tally"
    template = "tally"

    def prompt(self, persona):
        return Prompt(completion=f"Count the words: {persona}\nCount:", max_tokens=8)

    def parse(self, completion, persona):
        return Synthesis(text=str(len(persona.split())), fields={"raw": completion.text, "pid": os.getpid()})


class Crash(WordCount):
    """Kills the process that runs it, as a native crash in a backend would."""

    name = "crash"

    def parse(self, completion, persona):
        os._exit(3)


class FirstTryFails(WordCount):
    """Fails on an item's first run and works on its retry (the retry's item knows its earlier runs)."""

    name = "first-try-fails"

    def run_item(self, item):
        completion = yield self.prompt(item.data["persona"])
        if not item.earlier_runs:
            raise ValueError("the first try fails")
        return self.parse(completion, item.data["persona"])


class FilesSeen(WordCount):
    """Notes, as it hands out each work item, how many item files the driver has written so far."""

    name = "files-seen"
    seen: list[int] = []

    def work_items(self, ctx):
        folder = Path(f"{ctx.settings.db}.shards") / ctx.run_id / "items"
        for item in super().work_items(ctx):
            FilesSeen.seen.append(len(list(folder.glob("*.parquet"))))
            yield item


class TestPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(WordCount)
        register(FilesSeen)
        register(Crash)
        register(FirstTryFails)


def test_task_instances_travel_to_actors_and_results_come_back(personas_file):
    with plugins_registered(TestPlugin()):
        run_task("import", ["--input", str(personas_file)])
        summary = run_task("tally", backend="fake", executor="ray", batch_size=2)
        assert summary["items_done"] == 6
        with Store("personahub.duckdb", read_only=True) as store:
            rows = store.query_dicts("SELECT g.output, p.persona FROM generations g JOIN personas p ON p.id = g.input_id")
        for row in rows:
            output = json.loads(row["output"]) if isinstance(row["output"], str) else row["output"]
            assert output["synthesized text"] == str(len(row["persona"].split()))
            assert output["pid"] != os.getpid()  # parsed in an actor, not here


def test_items_go_to_files_as_the_selection_streams_and_a_limited_run_resumes(personas_file, monkeypatch):
    """The driver never holds the whole selection: keys are checked two at a time here, and each chunk of
    pending items goes to a file the actors read before the next persona is read. --limit and resume
    count as with the local executor."""
    monkeypatch.setattr(pending, "CHECK_CHUNK", 2)
    monkeypatch.setattr(ray_executor, "ITEMS_PER_BATCH", 1)
    with plugins_registered(TestPlugin()):
        run_task("import", ["--input", str(personas_file)])
        FilesSeen.seen = []
        first = run_task("files-seen", backend="fake", executor="ray", limit=3)
        assert FilesSeen.seen == [0, 0, 1, 1]  # the fourth item was read, then the budget was spent
        assert (first["items_done"], first["items_skipped"]) == (3, 0)
        FilesSeen.seen = []
        rest = run_task("files-seen", backend="fake", executor="ray")
        assert FilesSeen.seen == [0, 0, 0, 0, 1, 1]  # the first two were stored: no file for them
        assert (rest["items_done"], rest["items_skipped"]) == (3, 3)
        run_task("import", ["--input", str(personas_file)], db="local.duckdb")
        local = run_task("files-seen", backend="fake", db="local.duckdb", executor="local")
        assert local["items_done"] == 6
    keys = {db: set(stored(db)["generations"]) for db in ("personahub.duckdb", "local.duckdb")}
    assert len(keys["personahub.duckdb"]) == 6 and keys["personahub.duckdb"] == keys["local.duckdb"]
    assert not Path("personahub.duckdb.shards").exists()  # the item files went with the merged shards


def test_failed_items_are_kept_with_their_raw_output_and_a_retry_replaces_them(personas_file):
    with plugins_registered(TestPlugin()):
        run_task("import", ["--input", str(personas_file)])
        first = run_task("first-try-fails", backend="fake", executor="ray")
        assert (first["items_done"], first["items_failed"]) == (0, 6)
        failed = stored("personahub.duckdb")["generations"].values()
        assert all(g["status"] == "failed" and "the first try fails" in g["error"] and json.loads(g["raw_output"])
                   for g in failed)
        retry = run_task("first-try-fails", backend="fake", executor="ray", retry_failed=True)
        assert (retry["items_done"], retry["items_failed"]) == (6, 0)
    after = stored("personahub.duckdb")["generations"].values()
    assert len(after) == 6 and all(g["status"] == "ok" and g["attempts"] == 2 and g["error"] is None for g in after)


def test_a_crashing_actor_fails_the_run_with_one_line(personas_file):
    with plugins_registered(TestPlugin()):
        run_task("import", ["--input", str(personas_file)])
        with pytest.raises(RayExecutorError, match=r"^ray executor: \w*(Actor|Died)\w*: .+") as exc:
            run_task("crash", backend="fake", executor="ray")
        assert "\n" not in str(exc.value)


def test_work_items_travel_as_columns_with_their_earlier_runs():
    items = [WorkItem(key="k1", input_id="p1", data={"persona": "A nurse", "hop": 2, "tags": ["x"]}, earlier_runs=2),
             WorkItem(key="k2", input_id=None, data={})]
    assert rows_to_items(items_table(items).to_pydict()) == items
    with pytest.raises(RayExecutorError, match="k3: data cannot travel"):
        items_table([WorkItem(key="k3", input_id=None, data={"when": object()})])


def test_plugin_tasks_pickle_with_their_options():
    tasks = get_registry().tasks
    for name, args in (("text-to-persona", {"granularity": "coarse", "perspectives": ["like"]}),
                       ("math", {"topic": "geometry", "with_solution": True})):
        task = tasks[name](tasks[name].Options(**args))
        copy = cloudpickle.loads(cloudpickle.dumps(task))
        assert type(copy) is type(task) and copy.options == task.options


NODE = {"Alive": True, "Resources": {"CPU": 8.0}}
SMALL = {"Alive": True, "Resources": {"CPU": 4.0}}


@pytest.mark.parametrize("settings, nodes, actors, reserved, threads", [
    ({"backend": "llama-cpp"}, [NODE, NODE], 2, {"num_cpus": 8}, 8),  # one llama.cpp actor per node
    ({"backend": "llama-cpp"}, [NODE, SMALL], 3, {"num_cpus": 4}, 4),  # never more threads than reserved
    ({"backend": "llama-cpp", "threads": 4}, [NODE, NODE], 4, {"num_cpus": 4}, 4),
    ({"backend": "llama-cpp", "n_gpu_layers": -1}, [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 4.0}}],
     4, {"num_gpus": 1, "num_cpus": 1}, None),
    ({"backend": "openai"}, [NODE, {"Alive": False, "Resources": {"CPU": 8.0}}], 8, {"num_cpus": 1}, None),
])
def test_actor_plan(settings, nodes, actors, reserved, threads):
    plan = actor_plan(Settings(**settings), nodes)
    assert (plan.actors, plan.resources, plan.settings.model_extra.get("threads")) == (actors, reserved, threads)


def test_actor_plan_refuses_what_the_cluster_cannot_hold():
    with pytest.raises(RayExecutorError, match="has none"):
        actor_plan(Settings(backend="llama-cpp", n_gpu_layers=-1), [NODE])
    with pytest.raises(RayExecutorError, match="--threads 16"):
        actor_plan(Settings(backend="llama-cpp", threads=16), [NODE])


def test_without_ray_installed_the_cli_says_how_to_get_it(tmp_path):
    hidden = tmp_path / "no_ray"
    hidden.mkdir()
    (hidden / "ray.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    cli("ingest", str(corpus_path()), check=True)
    result = cli("run", "--plugin", "text-to-persona", "--backend", "fake", "--executor", "ray", "--limit", "1",
                 env={"PYTHONPATH": str(hidden)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'personahub[ray]'" in lines[0], result.stderr


def near_duplicate_personas(n: int, seed: int) -> list[str]:
    """Personas over a small vocabulary, a third of them with near copies (one word changed)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(200)]
    personas = []
    for _ in range(n):
        text = rng.choices(words, k=rng.randint(12, 24))
        personas.append("A person who knows " + " ".join(text))
        for _ in range(rng.choice([0, 0, 1, 2])):
            text = list(text)
            text[rng.randrange(len(text))] = rng.choice(words)
            personas.append("A person who knows " + " ".join(text))
    rng.shuffle(personas)
    return personas


def marks(db: str) -> set[tuple]:
    with Store(db, read_only=True) as store:
        return set(store.query("SELECT persona_id, duplicate_of, cluster_id, round(similarity, 6) FROM dedup_marks"))


def test_an_unreachable_cluster_fails_fast_with_one_line():
    with pytest.raises(RayExecutorError, match=r"^cannot reach Ray at 127.0.0.1:1: .+"):
        check_reachable("127.0.0.1:1")
    check_reachable("auto")  # Ray resolves that one itself


def test_the_core_imports_ray_only_when_the_ray_executor_is_asked_for():
    code = ("import sys; from personahub_core.store import Store; from personahub_core.ingest import ingest_paths; "
            "from personahub_core.sample_data import corpus_path; from personahub_core.testing import run_task; "
            "store = Store('personahub.duckdb'); ingest_paths(store, [corpus_path()], quiet=True); store.close(); "
            "summary = run_task('text-to-persona', backend='fake', limit=2); "
            "print(summary['items_done'], 'ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr


def test_minhash_on_ray_marks_what_the_local_task_marks(tmp_path, monkeypatch):
    from personahub_minhash import distributed

    # Several shards and blocks, so buckets really meet through the shuffle.
    monkeypatch.setattr(distributed, "ROWS_PER_SHARD", 2000)
    monkeypatch.setattr(distributed, "ROWS_PER_BLOCK", 300)
    personas = near_duplicate_personas(500, seed=7)
    earlier = write_jsonl(tmp_path / "earlier.jsonl", [{"persona": p} for p in personas[:250]])
    later = write_jsonl(tmp_path / "later.jsonl", [{"persona": p} for p in personas[250:]])
    checked = []
    for db, executor in (("local.duckdb", "local"), ("ray.duckdb", "ray")):
        # The same first round in both stores; the second checks new personas against each other
        # and against the kept ones (which must not be compared among themselves again).
        run_task("import", ["--input", str(earlier)], db=db)
        run_task("minhash", db=db)
        run_task("import", ["--input", str(later)], db=db)
        checked.append(run_task("minhash", db=db, executor=executor)["items_done"])
    assert checked[0] == checked[1] > 200
    assert marks("ray.duckdb") == marks("local.duckdb")
    assert len(marks("ray.duckdb")) > 150


@pytest.mark.model
def test_math_on_the_bundled_model_lands_four_rows(personas_file, monkeypatch):
    """The real thing: llama.cpp loaded inside a Ray actor, its rows written by the actor as shards."""
    run_task("import", ["--input", str(personas_file)])
    from typer.testing import CliRunner

    from personahub_core.backends.llama_cpp import LlamaCppBackend
    from personahub_core.cli import app

    def no_model_in_the_driver(*args, **kwargs):
        raise AssertionError("the driver loaded a model; only the actors (other processes) should")

    monkeypatch.setattr(LlamaCppBackend, "__init__", no_model_in_the_driver)

    result = CliRunner().invoke(app, ["run", "--plugin", "math", "--limit", "4", "--executor", "ray",
                                      "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    with Store("personahub.duckdb", read_only=True) as store:
        rows = store.query_dicts("SELECT model, output, raw_output, status, error FROM generations WHERE task = 'math'")
    assert len(rows) == 4 and summary["items_done"] + summary["items_failed"] == 4
    # Every answer rejected would mean the path (or the prompt) is broken, not a bad draw of the model.
    done = [r for r in rows if r["status"] == "ok"]
    assert summary["items_done"] == len(done) >= 2, [r["error"] for r in rows]
    for row in done:
        assert row["model"].lower().startswith("gemma")
        assert json.loads(row["output"])["synthesized text"] in json.loads(row["raw_output"])[-1]
