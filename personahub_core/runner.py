"""The runner: takes a task's work items, skips the ones already stored, streams the rest through the
backend with ``batch_size`` calls in flight, and writes their results in small transactions as they finish.

    work_items() ──> ctx.run_generative() ──> executor.run_items(): keys checked against `generations`
        a chunk at a time; the missing items spill to a temporary file (their count is the progress total)
        └─> executor.execute(stream of items) ── drive(): each item's run_item() generator yields a Prompt;
            backend.stream() keeps batch_size prompts in flight and asks drive() for the next one as a
            slot frees: the next step of an item just answered, else a new item read from the stream;
            each completion is sent back to its generator until it returns a result or raises Rejected
        └─> Outcome per item, as it is final ──> writer (batched transactions: generation rows + new personas)
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .backends.base import Backend
from .driving import Outcome
from .keys import work_key
from .progress import LabelColumn
from .run_stats import RunStats
from .selection import iter_persona_chunks, iter_row_chunks
from .settings import Settings
from .store import PluginStore, Store
from .tasks import GenerativeTask, NewPersona, Synthesis, Task, Verdict, WorkItem
from .terminal_text import markup_safe

if TYPE_CHECKING:
    from .status_file import StatusFile

stderr = Console(stderr=True, soft_wrap=True)  # one message per line, never hard-wrapped

# A flush is one columnar insert: its cost hardly depends on its size, so flush often enough that a kill
# loses little (a resumed run redoes it) and rarely enough that the insert is not the bottleneck.
FLUSH_EVERY_ROWS = 1000
FLUSH_EVERY_SECONDS = 1.0


class ItemExecutor(Protocol):
    """An executor as the context uses it (``personahub_core.executors.Executor``)."""

    def run_items(self, task: GenerativeTask, ctx: "TaskContext", items: Iterable[WorkItem], label: str | None,
                  budget: int | None) -> int | None: ...


class TaskContext:
    """What a task sees while it runs in this process (``tasks.Context``): the store, settings, options
    and stats, and the backend class and executor the command resolved (a dry run, which runs nothing,
    has no executor)."""

    def __init__(self, store: Store, settings: Settings, task: Task, run_id: str, *,
                 backend_class: type[Backend], executor: ItemExecutor | None = None,
                 limit: int | None = None, where: list[str] | None = None,
                 retry_failed: bool = False, quiet: bool = False):
        self.store = PluginStore(store)  # tasks see only the plugin API
        self.core_store = store  # the core's machinery: pending keys, the writer, the cache
        self.settings = settings
        self.task = task
        self.run_id = run_id
        self.backend_class = backend_class
        self.executor = executor
        self.limit = limit
        self.where = where or []
        self.retry_failed = retry_failed
        self.quiet = quiet
        self.stats = RunStats()
        self.status: "StatusFile | None" = None  # the run's <store>.status.json, when it writes one
        self.interrupted: Callable[[], bool] = lambda: False  # Ctrl-C seen, even if a library swallowed it
        self._backend: Backend | None = None

    @property
    def backend(self) -> Backend:
        """The backend, built on first use so tasks that never call the model never load one."""
        if self._backend is None:
            from .backends.factory import make_backend

            self._backend = make_backend(self.backend_class, self.settings, store=self.core_store, on_note=self.note)
        return self._backend

    def model_label(self) -> str:
        """The model name rows record, without building the backend (under Ray only the actors load it)."""
        return self.backend_class.model_label(self.settings)

    def model_identity(self) -> str:
        """Backend and model, as work keys carry them: another model's answers are other work."""
        return f"{self.settings.backend}:{self.model_label()}"

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    def select_personas(self) -> Iterator[dict]:
        """The selected personas, streamed: a run over 10^6 of them never holds them all."""
        for chunk in iter_persona_chunks(self.core_store, self.where):
            yield from chunk

    def select_rows(self, task: str) -> Iterator[dict]:
        """A task's finished rows, streamed, for a verifier (``iter_row_chunks``)."""
        for chunk in iter_row_chunks(self.core_store, task):
            yield from chunk

    def run_generative(self, task: GenerativeTask, items: Iterable[WorkItem], label: str | None = None,
                       budget: int | None = None) -> int | None:
        """Drive at most ``budget`` (None: all) of the task's missing work items through the executor and
        store every outcome; what is left of the budget, for a task that runs in stages (hops)."""
        if self.executor is None:
            raise RuntimeError(f"{task.name}: this context has no executor (a dry run runs no work items)")
        return self.executor.run_items(task, self, items, label, budget)

    def note(self, message: str) -> None:
        self.stats.notes.append(message)
        if not self.quiet:
            stderr.print(f"[dim]{markup_safe(message)}[/dim]")

    def progress(self, description: str, total: int | None) -> Progress:
        progress = Progress(
            LabelColumn(), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=stderr, disable=self.quiet, transient=False,
        )
        progress.add_task(description, total=total, extra="")
        if self.status is not None:
            self.status.expect(total)
        return progress


def outcome_records(outcome: Outcome, task: GenerativeTask, model: str, run_id: str, seed: int) -> tuple[dict, list[dict]]:
    """The generation row an outcome is stored as, and the persona rows it made. Pure, so an executor
    that writes its own shards (Ray) builds exactly the rows the local writer does."""
    output = outcome.result
    personas: list[dict] = []
    if outcome.status == "ok":
        if isinstance(output, list):  # personas from a source or an expander
            personas = [persona_row(outcome.item, task, p, i, model, run_id) for i, p in enumerate(output)]
            output = {"personas": [p["persona"] for p in personas]}
        elif isinstance(output, Synthesis):
            description = output.description or task.row_description or task.name
            output = {"synthesized text": output.text, "description": description, **output.fields}
        elif isinstance(output, Verdict):  # a verifier's judgement of the row keyed by input_id
            output = {"verifies": task.options.task, "passed": output.passed, "score": output.score,
                      "agreement": output.agreement, **output.fields}
    row = {
        "key": outcome.item.key, "task": task.name, "input_id": outcome.item.input_id,
        "status": outcome.status, "output": output, "raw_output": outcome.raw_outputs,
        # Not the prompts themselves (mostly a task's shared few-shot prefix): what they are rebuilt
        # from (the item's input; the raw outputs above) and a hash to check the rebuilt ones against.
        "item_data": {"input": outcome.item.data, "finish_reasons": outcome.finish_reasons},
        "prompt_hash": prompt_hash(outcome.prompts), "error": outcome.error, "template": task.template or task.name,
        "template_version": task.template_version, "options": task.options.model_dump(mode="json"),
        "model": model, "sampling": outcome.sampling, "seed": seed,
        "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        "seconds": round(outcome.seconds, 3), "run_id": run_id,
    }
    return row, personas


def prompt_hash(prompts: list[dict]) -> str:
    """A short hash of the prompts an item sent (completion and chat forms, every step). The texts go
    in as they are, with separators, rather than JSON-escaped: this runs for every item."""
    h = hashlib.sha256()
    for p in prompts:
        h.update(p["prompt"].encode())
        for message in p.get("messages") or ():
            h.update(f"\x1e{message.get('role')}\x1f".encode())
            h.update(str(message.get("content")).encode())
        h.update(b"\x1d")
    return h.hexdigest()[:24]


def persona_row(item: WorkItem, task: GenerativeTask, p: NewPersona, index: int, model: str, run_id: str) -> dict:
    return {
        "id": work_key(item.key, index, p.persona),
        "persona": p.persona,
        "origin": "text" if task.kind == "source" else "expansion",
        "source_id": item.data.get("source_id"),
        "parent_id": item.data.get("parent_id"),
        "hop": item.data.get("hop", 0),
        "relation": p.relation,
        "perspective": p.perspective,
        "note": p.note,
        "task": task.name,
        "model": model,
        "generation_key": item.key,
        "run_id": run_id,
    }


class Writer:
    """Buffers outcomes and writes them in small transactions, so a kill loses at most one buffer
    (which a resumed run simply redoes: keys make that safe)."""

    def __init__(self, ctx: TaskContext, task: GenerativeTask, model: str):
        self.ctx, self.task, self.model = ctx, task, model
        self.rows: list[dict] = []
        self.personas: list[dict] = []
        self.retried: set[str] = set()  # keys with a stored failed row (pending_chunks found them)
        self.last_flush = time.monotonic()

    def add(self, outcome: Outcome) -> None:
        stats = self.ctx.stats
        stats.prompt_tokens += outcome.prompt_tokens
        stats.completion_tokens += outcome.completion_tokens
        stats.cached_calls += outcome.cached_calls
        if outcome.status == "ok":
            stats.items_done += 1
        elif outcome.status == "rejected":
            stats.items_rejected += 1
        else:
            stats.items_failed += 1
        row, personas = outcome_records(outcome, self.task, self.model, self.ctx.run_id, self.ctx.settings.seed)
        if outcome.item.earlier_runs:
            self.retried.add(outcome.item.key)
        self.rows.append(row)
        self.personas.extend(personas)
        if len(self.rows) >= FLUSH_EVERY_ROWS or time.monotonic() - self.last_flush > FLUSH_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.ctx.stats.personas_added += self.ctx.core_store.write_generations(self.rows, self.personas, self.retried)
        self.retried = set()
        s = self.ctx.stats
        self.ctx.core_store.update_run(self.ctx.run_id, s.items_done, s.items_failed + s.items_rejected, s.completion_tokens)
        if self.ctx.status is not None:
            self.ctx.status.write(s)
        self.rows, self.personas = [], []
        self.last_flush = time.monotonic()


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
