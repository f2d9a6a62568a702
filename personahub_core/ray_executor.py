"""The Ray executor: a task's work items run on a pool of Ray actors, each holding its own backend.

    driver (runner)                             Ray actors (ActorPoolStrategy)
    pending items ──> rows {key, input_id, data} ──> map_batches(_DriveActor): drive() with a backend
    Writer <── Outcome <── rows {outcome: JSON} <───── built from the settings (llama.cpp model per
                                                       actor, or HTTP to a vLLM / OpenAI fleet)

The runner still selects the items (skipping stored keys) and writes every outcome, so resume and
no-duplicates hold exactly as with the local executor. Rows cross the process boundary as JSON strings:
Arrow needs one schema per column, and work item data and results differ between tasks.

Ray is imported only when this executor is built, so the core never needs it otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterator

from .errors import PersonaHubError, UsageError
from .executors import Executor
from .settings import Settings
from .tasks import GenerativeTask, NewPersona, Synthesis, WorkItem

if TYPE_CHECKING:
    from .runner import Outcome

INSTALL_HINT = "pip install 'personahub[ray]'"
# A local Ray only ships work item rows and outcomes through its object store: keep it small.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


class RayExecutorError(PersonaHubError):
    """Ray could not start, connect, or run the actors. One line, shown as is."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]; plain ray lacks it)
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def ensure_ray(settings: Settings):
    """Connect to ``--ray-address``, or start a small local Ray once per process (reused by later runs)."""
    ray = import_ray()
    if not ray.is_initialized():
        # Ray turns on token auth for a new local cluster and says so on every start; keep it, quietly.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        try:
            if settings.ray_address:
                ray.init(address=settings.ray_address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {settings.ray_address}" if settings.ray_address else "locally"
            raise RayExecutorError(f"cannot start or reach Ray {where}: {_first_line(exc)}") from None
    quiet_ray_data()
    return ray


def quiet_ray_data() -> None:
    """Our own progress bar and summary report the run; Ray Data's bars and INFO logs would interleave."""
    import ray.data

    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = False
    data_ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


# -- rows: work items and outcomes as JSON-safe dicts


def item_to_row(item: WorkItem) -> dict:
    try:
        data = json.dumps(item.data, ensure_ascii=False)
    except TypeError as exc:
        raise RayExecutorError(f"work item {item.key}: data cannot travel to a Ray actor as JSON: {exc}") from None
    return {"key": item.key, "input_id": item.input_id, "data": data}


def row_to_item(row: dict) -> WorkItem:
    return WorkItem(key=row["key"], input_id=row["input_id"], data=json.loads(row["data"]))


def _result_to_json(result: Any) -> dict:
    if isinstance(result, Synthesis):
        return {"synthesis": asdict(result)}
    if isinstance(result, list) and all(isinstance(p, NewPersona) for p in result):
        return {"personas": [asdict(p) for p in result]}
    return {"value": result}


def _result_from_json(encoded: dict) -> Any:
    if "synthesis" in encoded:
        return Synthesis(**encoded["synthesis"])
    if "personas" in encoded:
        return [NewPersona(**p) for p in encoded["personas"]]
    return encoded["value"]


def outcome_to_json(outcome: "Outcome") -> str:
    fields = {k: v for k, v in vars(outcome).items() if k not in ("item", "result")}
    record = {**fields, "item": item_to_row(outcome.item), "result": _result_to_json(outcome.result)}
    try:
        return json.dumps(record, ensure_ascii=False)
    except TypeError as exc:  # a plugin returned something the store could not hold either
        record.update(status="failed", result={"value": None},
                      error=f"result of {outcome.item.key} is not JSON-serializable: {exc}")
        return json.dumps(record, ensure_ascii=False)


def outcome_from_json(text: str) -> "Outcome":
    from .runner import Outcome

    record = json.loads(text)
    record["item"] = row_to_item(record["item"])
    record["result"] = _result_from_json(record["result"])
    return Outcome(**record)


# -- the actor


class _DriveActor:
    """One per Ray actor: builds the backend once, then drives each batch of work items through it."""

    def __init__(self, task: GenerativeTask, settings: Settings, flush_every: int):
        from .backends.factory import make_backend

        self.task = task
        self.settings = settings
        self.flush_every = flush_every
        self.backend = make_backend(settings)  # no store here: the completion cache lives with the driver

    def __call__(self, batch: dict) -> Iterator[dict]:
        from .runner import drive

        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        done: list[str] = []
        # Yield outcomes in small groups, so the driver stores them while the rest of the batch decodes.
        for outcome in drive(self.task, [row_to_item(r) for r in rows], self.backend, self.settings):
            done.append(outcome_to_json(outcome))
            if len(done) >= self.flush_every:
                yield {"outcome": done}
                done = []
        if done:
            yield {"outcome": done}


class RayExecutor(Executor):
    """Work items through Ray Data ``map_batches`` on a pool of actors, each with its own backend."""

    name = "ray"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        import_ray()  # fail at once, with the install hint, when the extra is missing

    def execute(self, task, items, ctx, window):
        ray = ensure_ray(self.settings)
        actors, resources = actor_plan(self.settings, ray.nodes())
        # Ray Data's default restarts a dead actor and retries its batch forever, so a crash that repeats
        # on some input (say, in llama.cpp) would hang the run. A cluster gets a few restarts to ride out
        # a lost node; one machine fails at once.
        retries = 3 if self.settings.ray_address else 0
        restarts = {"max_restarts": retries, "max_task_retries": retries}
        # Batches of at most one window, and at least one batch per actor when there are enough items.
        per_batch = max(1, min(window, math.ceil(len(items) / actors)))
        dataset = ray.data.from_items([item_to_row(i) for i in items],
                                      override_num_blocks=math.ceil(len(items) / per_batch))
        with warnings.catch_warnings():
            # Actor restart limits have no named parameter yet, only the deprecated **ray_remote_args.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            outcomes = dataset.map_batches(
                _DriveActor,
                fn_constructor_kwargs={"task": task, "settings": self.settings, "flush_every": self.settings.batch_size},
                batch_size=per_batch,
                compute=ray.data.ActorPoolStrategy(size=actors),
                batch_format="numpy",
                **resources,
                **restarts,
            )
        ctx.note(f"ray: {len(items)} items on {actors} actor(s), each reserving {resources}")
        try:
            for row in outcomes.iter_rows():
                yield outcome_from_json(row["outcome"])
        except ray.exceptions.RayError as exc:
            raise RayExecutorError(f"ray executor: {_root_cause(exc)}") from None


def actor_plan(settings: Settings, nodes: list[dict]) -> tuple[int, dict]:
    """How many actors, and what each reserves.

    A llama.cpp actor decodes many sequences in one context with every thread it is given, so the best
    use of a node is one actor per node (or per GPU); ``--threads N`` packs node_cpus // N actors per node.
    Other backends are HTTP clients of a serving fleet: one light actor per CPU, each keeping
    ``--batch-size`` requests in flight.
    """
    alive = [n["Resources"] for n in nodes if n.get("Alive", True)]
    node_cpus = [int(r.get("CPU", 0)) for r in alive]
    if settings.backend == "llama-cpp" and settings.n_gpu_layers != 0:
        gpus = int(sum(r.get("GPU", 0) for r in alive))
        if gpus < 1:
            raise RayExecutorError("--n-gpu-layers asks for a GPU, but the Ray cluster has none")
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    if settings.backend == "llama-cpp":
        per_actor = settings.threads or max(node_cpus, default=1)
        actors = sum(c // per_actor for c in node_cpus)
        if actors < 1:
            raise RayExecutorError(f"--threads {per_actor}: no Ray node has that many CPUs (nodes: {node_cpus})")
        return actors, {"num_cpus": per_actor}
    return max(1, sum(node_cpus)), {"num_cpus": 1}


def _root_cause(exc: BaseException) -> str:
    """The innermost error a Ray failure wraps, as one line."""
    cause = getattr(exc, "cause", None) or exc.__cause__
    while cause is not None and cause is not exc:
        exc, cause = cause, getattr(cause, "cause", None) or cause.__cause__
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
