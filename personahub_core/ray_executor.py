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
import socket
import sys
import warnings
from dataclasses import asdict, dataclass
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
                check_reachable(settings.ray_address)
                ray.init(address=settings.ray_address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {settings.ray_address}" if settings.ray_address else "locally"
            raise RayExecutorError(f"cannot start or reach Ray {where}: {_first_line(exc)}") from None
    quiet_ray_data()
    return ray


def check_reachable(address: str) -> None:
    """Ray waits minutes for a head node that is not there; a host:port that refuses us fails at once."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise RayExecutorError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


def quiet_ray_data() -> None:
    """Our own progress bar, summary and one-line errors report the run. Ray Data's bars, logs and
    tracebacks still go to its log file in the Ray session folder; PERSONAHUB_DEBUG=1 shows them here too."""
    import ray.data

    data_ctx = ray.data.DataContext.get_current()
    data_ctx.enable_progress_bars = False
    data_ctx.print_on_execution_start = False
    if os.environ.get("PERSONAHUB_DEBUG"):
        return
    for handler in logging.getLogger("ray.data").handlers:
        if getattr(handler, "stream", None) in (sys.stderr, sys.stdout):
            handler.setLevel(logging.CRITICAL)


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
    if "fatal" in record:
        error = RayExecutorError(record["fatal"])
        error.exit_code = record["exit_code"]
        raise error
    record["item"] = row_to_item(record["item"])
    record["result"] = _result_from_json(record["result"])
    return Outcome(**record)


# -- the actor


class _DriveActor:
    """One per Ray actor: builds the backend on first use, then drives each batch of items through it.

    An error that stops the backend (bad model, unreachable server) comes back as a row, not as an
    exception: Ray keeps an exception's type and message only inside a traceback text.
    """

    def __init__(self, task: GenerativeTask, settings: Settings, flush_every: int):
        self.task = task
        self.settings = settings
        self.flush_every = flush_every
        self.backend = None

    def __call__(self, batch: dict) -> Iterator[dict]:
        from .backends.factory import make_backend
        from .runner import drive

        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        done: list[str] = []
        try:
            if self.backend is None:
                self.backend = make_backend(self.settings)  # no store here: the cache lives with the driver
            # Yield outcomes in small groups, so the driver stores them while the rest of the batch decodes.
            for outcome in drive(self.task, [row_to_item(r) for r in rows], self.backend, self.settings):
                done.append(outcome_to_json(outcome))
                if len(done) >= self.flush_every:
                    yield {"outcome": done}
                    done = []
        except Exception as exc:
            message = str(exc) if isinstance(exc, PersonaHubError) else f"{type(exc).__name__}: {_first_line(exc)}"
            done.append(json.dumps({"fatal": message, "exit_code": getattr(exc, "exit_code", 1)}))
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
        plan = actor_plan(self.settings, ray.nodes())
        # Ray Data's default restarts a dead actor and retries its batch forever, so a crash that repeats
        # on some input (say, in llama.cpp) would hang the run. A cluster gets a few restarts to ride out
        # a lost node; one machine fails at once.
        retries = 3 if self.settings.ray_address else 0
        restarts = {"max_restarts": retries, "max_task_retries": retries}
        # Batches of at most one window, and at least one batch per actor when there are enough items.
        per_batch = max(1, min(window, math.ceil(len(items) / plan.actors)))
        dataset = ray.data.from_items([item_to_row(i) for i in items],
                                      override_num_blocks=math.ceil(len(items) / per_batch))
        with warnings.catch_warnings():
            # Actor restart limits have no named parameter yet, only the deprecated **ray_remote_args.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            outcomes = dataset.map_batches(
                _DriveActor,
                fn_constructor_kwargs={"task": task, "settings": plan.settings, "flush_every": self.settings.batch_size},
                batch_size=per_batch,
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                batch_format="numpy",
                **plan.resources,
                **restarts,
            )
        ctx.note(f"ray: {len(items)} items on {plan.actors} actor(s), each reserving {plan.resources}")
        try:
            for row in outcomes.iter_rows():
                yield outcome_from_json(row["outcome"])
        except ray.exceptions.RayError as exc:  # an actor died, or Ray itself failed
            cause = _root_cause(exc)
            raise RayExecutorError(f"ray executor: {type(cause).__name__}: {_first_line(cause)}") from None


@dataclass
class ActorPlan:
    actors: int
    resources: dict  # what each actor reserves
    settings: Settings  # what each actor builds its backend from


def actor_plan(settings: Settings, nodes: list[dict]) -> ActorPlan:
    """How many actors, what each reserves, and the settings their backends get.

    A llama.cpp actor decodes many sequences in one context with every thread it is given, so the best
    use of a node is one actor using all its cores (or one per GPU); ``--threads N`` packs
    node_cpus // N actors per node. Each actor's llama.cpp gets exactly the threads it reserved.
    Other backends are HTTP clients of a serving fleet: one light actor per CPU, each keeping
    ``--batch-size`` requests in flight.
    """
    alive = [n["Resources"] for n in nodes if n.get("Alive", True)]
    node_cpus = [int(r.get("CPU", 0)) for r in alive if r.get("CPU", 0) >= 1]
    if settings.backend == "llama-cpp" and settings.n_gpu_layers != 0:
        gpus = int(sum(r.get("GPU", 0) for r in alive))
        if gpus < 1:
            raise RayExecutorError("--n-gpu-layers asks for a GPU, but the Ray cluster has none")
        return ActorPlan(gpus, {"num_gpus": 1, "num_cpus": 1}, settings)
    if settings.backend == "llama-cpp":
        per_actor = settings.threads or min(node_cpus, default=1)
        actors = sum(c // per_actor for c in node_cpus)
        if actors < 1:
            raise RayExecutorError(f"--threads {per_actor}: no Ray node has that many CPUs (nodes: {node_cpus})")
        return ActorPlan(actors, {"num_cpus": per_actor}, settings.model_copy(update={"threads": per_actor}))
    return ActorPlan(max(1, sum(node_cpus)), {"num_cpus": 1}, settings)


def _root_cause(exc: BaseException) -> BaseException:
    """The error a Ray failure wraps (a task's own exception travels as ``.cause``)."""
    while isinstance(getattr(exc, "cause", None), BaseException):
        exc = exc.cause
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
