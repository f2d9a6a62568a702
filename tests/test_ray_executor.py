"""The Ray executor and MinHash on Ray, on one local Ray session shared by the whole module.

The executor must be a drop-in for the local one: the same work items give the same keys, personas
and rows, a resumed run does only what is missing, and the summary comes back through the same writer.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import ray
import ray.data
from ray import cloudpickle

from personahub_core.hookspecs import hookimpl
from personahub_core.ingest import ingest_paths
from personahub_core.plugins import get_registry
from personahub_core.ray_executor import (RayExecutorError, actor_plan, check_reachable, outcome_from_json,
                                          outcome_to_json)
from personahub_core.runner import Outcome
from personahub_core.sample_data import corpus_path
from personahub_core.settings import Settings
from personahub_core.store import Store
from personahub_core.tasks import NewPersona, Prompt, Synthesis, Synthesizer, WorkItem
from personahub_core.testing import plugins_registered, run_task

from conftest import cli, write_jsonl

# Ray Data copies its context into each job and trips over its own deprecated settings while doing so.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


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
    with Store(db, read_only=True) as store:
        return {
            "generations": {r["key"]: (r["task"], r["status"], r["output"], r["input_id"]) for r in store.query_dicts(
                "SELECT key, task, status, output, input_id FROM generations")},
            "personas": {r["id"]: (r["persona"], r["generation_key"]) for r in store.query_dicts(
                "SELECT id, persona, generation_key FROM personas")},
        }


def test_ray_gives_the_same_keys_personas_and_rows_as_local_and_resumes():
    local, distributed = new_store("local"), new_store("ray")
    run_task("text-to-persona", backend="fake", limit=8, db=local, executor="local")
    # An interrupted ray run (3 items), then the rest: the keys make the two runs add up to one.
    first = run_task("text-to-persona", backend="fake", limit=3, db=distributed, executor="ray")
    rest = run_task("text-to-persona", backend="fake", limit=5, db=distributed, executor="ray")
    assert (first["items_done"], rest["items_done"], rest["items_skipped"]) == (3, 5, 3)
    assert any(n.startswith("ray: 5 items on") for n in rest["notes"])

    run_task("math", backend="fake", db=local, executor="local")
    math = run_task("math", backend="fake", db=distributed, executor="ray")
    assert math["items_done"] + math["items_failed"] == 8  # one problem per persona

    a, b = stored(local), stored(distributed)
    assert len(a["personas"]) == 8 and len(a["generations"]) == 16
    assert a == b

    again = run_task("math", backend="fake", db=distributed, executor="ray")
    assert (again["items_done"], again["items_failed"], again["items_skipped"]) == (0, 0, 8)
    assert stored(distributed) == b


class Tally(Synthesizer):
    """A synthesizer defined outside any installed plugin, with options that change its prompt."""

    name = "tally"
    template = "tally"

    def prompt(self, persona):
        return Prompt(completion=f"Count the words: {persona}\nCount:", max_tokens=8)

    def parse(self, text, persona):
        return Synthesis(text=str(len(persona.split())), fields={"raw": text, "pid": os.getpid()})


class Crash(Tally):
    """Kills the process that runs it, as a native crash in a backend would."""

    name = "crash"

    def parse(self, text, persona):
        os._exit(3)


class TestPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Tally)
        register(Crash)


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


def test_a_crashing_actor_fails_the_run_with_one_line(personas_file):
    with plugins_registered(TestPlugin()):
        run_task("import", ["--input", str(personas_file)])
        with pytest.raises(RayExecutorError, match=r"^ray executor: \w*(Actor|Died)\w*: .+") as exc:
            run_task("crash", backend="fake", executor="ray")
        assert "\n" not in str(exc.value)


def test_outcomes_round_trip_through_json():
    item = WorkItem(key="k1", input_id="p1", data={"persona": "A nurse", "hop": 2, "tags": ["x"]})
    for result in (Synthesis("text", {"solution": "4", "steps": [1, 2]}, "math problem"),
                   [NewPersona("A doctor", relation="colleague", perspective=None, note="n")],
                   {"anything": [1, "json"]}):
        outcome = Outcome(item=item, status="ok", result=result, prompts=[{"prompt": "p", "messages": None}],
                          raw_outputs=["raw"], prompt_tokens=3, completion_tokens=5, seconds=0.5,
                          sampling={"seed": 7}, cached_calls=1)
        assert outcome_from_json(outcome_to_json(outcome)) == outcome


def test_an_unserialisable_result_fails_its_item_not_the_run():
    outcome = Outcome(item=WorkItem("k", None, {}), status="ok", result={"when": object()})
    back = outcome_from_json(outcome_to_json(outcome))
    assert back.status == "failed" and "not JSON-serializable" in back.error


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
    assert (plan.actors, plan.resources, plan.settings.threads) == (actors, reserved, threads)


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


def test_math_on_the_bundled_model_lands_four_rows(personas_file, monkeypatch):
    """The real thing: llama.cpp loaded inside a Ray actor, rows written by the driver."""
    run_task("import", ["--input", str(personas_file)])
    from typer.testing import CliRunner

    from personahub_core.backends.llama_cpp import LlamaCppBackend
    from personahub_core.cli import app

    def no_model_in_the_driver(*args, **kwargs):
        raise AssertionError("the driver loaded a model; only the actors (other processes) should")

    monkeypatch.setattr(LlamaCppBackend, "__init__", no_model_in_the_driver)

    result = CliRunner().invoke(app, ["run", "--plugin", "math", "--limit", "4", "--executor", "ray",
                                      "--max-tokens", "32", "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["items_done"] + summary["items_failed"] == 4 and summary["completion_tokens"] > 0
    with Store("personahub.duckdb", read_only=True) as store:
        rows = store.query_dicts("SELECT model, raw_output, status FROM generations WHERE task = 'math'")
    assert len(rows) == 4
    for row in rows:  # each row holds what the model said (text may be empty: a completion can stop at once)
        raw = json.loads(row["raw_output"]) if isinstance(row["raw_output"], str) else row["raw_output"]
        assert row["model"].lower().startswith("gemma") and len(raw) >= 1
