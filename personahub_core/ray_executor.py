"""The Ray executor: a task's work items run on a pool of Ray actors, each holding its own backend and
writing its rows as Parquet shards (personahub_core/shards.py).

    driver (runner)                              Ray actors (ActorPoolStrategy)
    merge shards a killed run left
    selection, a chunk at a time ──> pending keys ──> <run>/items/part-N.parquet {key, input_id, data}
    slices {path, start, count} ───────────────────> map_batches(_DriveActor): streams its slice through
                                                      drive() with a backend (llama.cpp per actor, or HTTP)
                                                      outcome_records() ──> <db>.shards/<run>/*.parquet
    progress bar <── tallies {done, failed, tokens} <──┘
    merge this run's shards: INSERT ... SELECT FROM read_parquet(...), keyed as the local Writer

The driver streams the selection, checks its keys against the store a chunk at a time and writes the
missing items to Parquet beside the shards; then it only counts. Neither the items nor the rows are
ever all in the driver, so its memory does not grow with the run. The rows are built by the same pure
function the local Writer uses, and merged with the same keys, so resume and no-duplicates hold as with
the local executor. Item data differs between tasks, so it travels as JSON text (Arrow needs one type
per column).

Ray is imported only when this executor is built, so the core never needs it otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .errors import PersonaHubError, UsageError
from .executors import Executor
from .driving import drive
from .pending import pending_chunks
from .run_stats import RunStats
from .runner import TaskContext, outcome_records
from .settings import Settings
from .shards import ShardSpec, ShardWriter, Tally, merge_shards, read_items, shard_root, write_items
from .store import Store
from .tasks import GenerativeTask, WorkItem

INSTALL_HINT = "pip install 'personahub[ray]'"
# A local Ray only ships work items and small tallies through its object store: keep it small.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
# An actor writes a shard after this many rows or seconds (and at the end of each batch): files big
# enough to read fast, and a killed run loses at most half a minute of each actor's work.
ROWS_PER_SHARD = 10_000
SECONDS_PER_SHARD = 30.0
ITEMS_PER_BATCH = 10_000
MERGE_EVERY_SECONDS = 10.0


class RayExecutorError(PersonaHubError):
    """Ray could not start, connect, or run the actors. One line, shown as is."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data]; plain ray lacks it)
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ray_address: str | None = Field(None, description="Ray cluster address (default: start a local Ray)")
    ray_shards: str | None = Field(None, description="folder or URI for the actors' Parquet shards (default: <db>.shards)")


def ensure_ray(address: str | None):
    """Connect to the cluster at ``address`` (``-o ray_address=``), or start a small local Ray once per
    process (reused by later runs)."""
    ray = import_ray()
    if not ray.is_initialized():
        # Ray turns on token auth for a new local cluster and says so on every start; keep it, quietly.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        try:
            if address:
                check_reachable(address)
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"at {address}" if address else "locally"
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


# -- work items in, tallies out


# One schema for every item file, whatever a chunk holds (its input ids may all be missing).
ITEM_SCHEMA = pa.schema([("key", pa.string()), ("input_id", pa.string()), ("data", pa.string()),
                         ("earlier_runs", pa.int64())])


def items_table(items: list[WorkItem]) -> pa.Table:
    """Work items as one Arrow table (columns, not a dict per item). Item data differs between tasks,
    and Arrow needs one type per column, so it travels as JSON text."""
    data = []
    for item in items:
        try:
            data.append(json.dumps(item.data, ensure_ascii=False))
        except TypeError as exc:
            raise RayExecutorError(f"work item {item.key}: data cannot travel to a Ray actor as JSON: {exc}") from None
    return pa.table({"key": [i.key for i in items], "input_id": [i.input_id for i in items], "data": data,
                     "earlier_runs": [i.earlier_runs for i in items]}, schema=ITEM_SCHEMA)


def rows_to_items(batch: dict) -> list[WorkItem]:
    return [WorkItem(key=str(key), input_id=None if input_id is None else str(input_id), data=json.loads(data),
                     earlier_runs=int(earlier))
            for key, input_id, data, earlier in zip(batch["key"], batch["input_id"], batch["data"], batch["earlier_runs"])]


def item_slices(files: list[tuple[str, int]], per_batch: int) -> list[dict]:
    """The item files cut into batches of at most ``per_batch`` rows: what the actors are handed (a
    path and a row range each, not the items themselves)."""
    return [{"path": path, "start": start, "count": min(per_batch, rows - start)}
            for path, rows in files for start in range(0, rows, per_batch)]


def tally_row(tally: Tally, fatal: str = "", exit_code: int = 0) -> dict:
    """What an actor sends the driver: counts for the progress bar, or the error that stops the run."""
    return {"done": [tally.done], "rejected": [tally.rejected], "failed": [tally.failed],
            "prompt_tokens": [tally.prompt_tokens], "completion_tokens": [tally.completion_tokens],
            "fatal": [fatal], "exit_code": [exit_code]}


def tally_from_row(row: dict) -> Tally:
    if row["fatal"]:
        error = RayExecutorError(row["fatal"])
        error.exit_code = int(row["exit_code"])
        raise error
    return Tally(done=row["done"], rejected=row["rejected"], failed=row["failed"],
                 prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"])


# -- the actor


class _DriveActor:
    """One per Ray actor: builds the backend on first use, streams each batch of items through it with
    ``batch_size`` calls in flight, and writes the rows as Parquet shards. Only small tallies go back to
    the driver.

    An error that stops the backend (bad model, unreachable server) comes back as a row, not as an
    exception: Ray keeps an exception's type and message only inside a traceback text.
    """

    def __init__(self, task: GenerativeTask, settings: Settings, backend_class: type, spec: ShardSpec, model: str):
        self.task = task
        self.backend_class = backend_class  # resolved by the driver's command; classes travel by reference
        self.settings = settings
        self.model = model
        self.shards = ShardWriter(spec)
        self.backend = None

    def __call__(self, batch: dict) -> Iterator[dict]:
        from .backends.factory import make_backend

        items = (item for path, start, count in zip(batch["path"], batch["start"], batch["count"])
                 for item in rows_to_items(read_items(self.shards.fs, str(path), int(start), int(count)).to_pydict()))
        rows: list[dict] = []
        personas: list[dict] = []
        progress, written = Tally(), time.monotonic()
        try:
            if self.backend is None:
                self.backend = make_backend(self.backend_class, self.settings)  # no store here: the cache lives with the driver
            for outcome in drive(self.task, items, self.backend, self.settings):
                row, made = outcome_records(outcome, self.task, self.model, self.shards.spec.run_id, self.settings.seed)
                rows.append(row)
                personas.extend(made)
                progress.count(outcome.status, outcome.prompt_tokens, outcome.completion_tokens)
                if len(rows) >= ROWS_PER_SHARD or time.monotonic() - written > SECONDS_PER_SHARD:
                    self.shards.write(rows, personas)
                    rows, personas, written = [], [], time.monotonic()
                if progress.items >= self.settings.batch_size:
                    yield tally_row(progress)
                    progress = Tally()
            self.shards.write(rows, personas)
        except Exception as exc:
            message = str(exc) if isinstance(exc, PersonaHubError) else f"{type(exc).__name__}: {_first_line(exc)}"
            yield tally_row(progress, fatal=message, exit_code=getattr(exc, "exit_code", 1))
            return
        yield tally_row(progress)


class RayExecutor(Executor):
    """Work items through Ray Data ``map_batches`` on a pool of actors, each with its own backend,
    writing its rows as Parquet shards that the store then merges."""

    name = "ray"
    description = "on a Ray cluster (or a local Ray): a pool of actors, each with its own backend"
    Options = RayOptions

    def __init__(self, settings: Settings):
        super().__init__(settings)
        import_ray()  # fail at once, with the install hint, when the extra is missing

    def run_items(self, task: GenerativeTask, ctx: TaskContext, items: Iterable[WorkItem], label: str | None,
                  budget: int | None) -> int | None:
        """What ``run_generative`` does, with the actors writing the rows: merge the shards a killed run
        left (so their items count as done), select the missing items (``budget`` at most), run them while
        merging this run's shards as they come. The run's counts are what its shards added to the store."""
        root = shard_root(self.settings.db, self.options.ray_shards)
        for run_id, tally in merge_shards(ctx.core_store, root).items():
            record_leftover(ctx.core_store, run_id, tally)
        spec = ShardSpec.for_run(ctx.core_store, root, ctx.run_id)
        # The missing items go to Parquet files as they are found: the driver never holds them all.
        files = write_items(spec, (items_table(chunk) for chunk in pending_chunks(ctx, items, budget)), ITEMS_PER_BATCH)
        total = sum(rows for _, rows in files)
        if total:
            self._run_on_actors(task, ctx, files, total, label, root, spec)
        return None if budget is None else budget - total

    def _run_on_actors(self, task: GenerativeTask, ctx: TaskContext, files: list[tuple[str, int]], total: int,
             label: str | None, root: str, spec: ShardSpec) -> None:
        live, finished = Tally(), False
        with ctx.progress(label or task.name, total=total) as progress:
            bar = progress.task_ids[0]
            started = merged_at = time.perf_counter()
            try:
                for tally in self.start(task, files, total, ctx, spec):
                    live += tally
                    if ctx.interrupted():
                        raise KeyboardInterrupt
                    now = time.perf_counter()
                    progress.update(bar, advance=tally.items,
                                    extra=f"{live.completion_tokens / max(now - started, 1e-6):5.1f} tok/s")
                    if now - merged_at > MERGE_EVERY_SECONDS:  # the store (and the run's counts) keep up
                        self.merge_run(ctx, root, writing=True)
                        merged_at = now
                finished = True
            finally:
                # After an error or Ctrl-C, actors may still be writing: what they add is merged next time.
                self.merge_run(ctx, root, writing=not finished)

    @staticmethod
    def merge_run(ctx: TaskContext, root: str, writing: bool) -> None:
        merged = merge_shards(ctx.core_store, root, ctx.run_id, writing=writing)
        add_to_stats(ctx.stats, merged.get(ctx.run_id, Tally()))
        s = ctx.stats
        ctx.core_store.update_run(ctx.run_id, s.items_done, s.items_failed + s.items_rejected, s.completion_tokens)
        if ctx.status is not None:
            ctx.status.write(s)

    def start(self, task: GenerativeTask, files: list[tuple[str, int]], total: int, ctx: TaskContext,
              spec: ShardSpec) -> Iterator[Tally]:
        """Hand the item files (``total`` items) to a pool of actors; the tallies they send back, as they come."""
        ray = ensure_ray(self.options.ray_address)
        plan = actor_plan(self.settings, ray.nodes())
        # Ray Data's default restarts a dead actor and retries its batch forever, so a crash that repeats
        # on some input (say, in llama.cpp) would hang the run. A cluster gets a few restarts to ride out
        # a lost node; one machine fails at once.
        retries = 3 if self.options.ray_address else 0
        restarts = {"max_restarts": retries, "max_task_retries": retries}
        # At least one batch per actor; a batch ends with a shard, so batches are not small either.
        per_batch = max(1, min(ITEMS_PER_BATCH, math.ceil(total / plan.actors)))
        # Each actor reads its slice of the item files itself: Ray Data's own reader would take CPUs
        # the actors hold (and needs fsspec's HTTP extras even for local files).
        dataset = ray.data.from_items(item_slices(files, per_batch))
        with warnings.catch_warnings():
            # Actor restart limits have no named parameter yet, only the deprecated **ray_remote_args.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            tallies = dataset.map_batches(
                _DriveActor,
                fn_constructor_kwargs={"task": task, "settings": plan.settings, "backend_class": ctx.backend_class, "spec": spec,
                                       "model": ctx.model_label()},
                batch_size=1,  # one slice
                compute=ray.data.ActorPoolStrategy(size=plan.actors),
                batch_format="numpy",
                **plan.resources,
                **restarts,
            )
        ctx.note(f"ray: {total} items on {plan.actors} actor(s), each reserving {plan.resources}")
        return _tallies(ray, tallies)


def _tallies(ray, dataset) -> Iterator[Tally]:
    try:
        for row in dataset.iter_rows():
            yield tally_from_row(row)
    except ray.exceptions.RayError as exc:  # an actor died, or Ray itself failed
        cause = _root_cause(exc)
        raise RayExecutorError(f"ray executor: {type(cause).__name__}: {_first_line(cause)}") from None


def record_leftover(store: Store, run_id: str, tally: Tally) -> None:
    """A killed run's counts grow by what its leftover shards added: ``runs`` then agrees with the rows."""
    counts = store.query("SELECT items_done, items_failed, completion_tokens FROM runs WHERE id = ?", [run_id])
    if counts:
        done, failed, tokens = counts[0]
        store.update_run(run_id, done + tally.done, failed + tally.failed + tally.rejected,
                         tokens + tally.completion_tokens)


def add_to_stats(stats: RunStats, tally: Tally) -> None:
    stats.items_done += tally.done
    stats.items_rejected += tally.rejected
    stats.items_failed += tally.failed
    stats.prompt_tokens += tally.prompt_tokens
    stats.completion_tokens += tally.completion_tokens
    stats.personas_added += tally.personas


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
    from .backends.llama_cpp import LlamaCppBackend

    llama = LlamaCppBackend.options_from(settings) if settings.backend == "llama-cpp" else None
    if llama is not None and llama.n_gpu_layers != 0:
        gpus = int(sum(r.get("GPU", 0) for r in alive))
        if gpus < 1:
            raise RayExecutorError("--n-gpu-layers asks for a GPU, but the Ray cluster has none")
        return ActorPlan(gpus, {"num_gpus": 1, "num_cpus": 1}, settings)
    if llama is not None:
        per_actor = llama.threads or min(node_cpus, default=1)
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
