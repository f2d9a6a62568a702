"""Executors: where the stream of work items runs. The writer always stays in this process.

The command resolves the executor by name from the registry and hands the instance to the run's
TaskContext; the runner then calls ``run_items`` for every generative task.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar, Iterable, Iterator

from pydantic import BaseModel

from .driving import drive
from .pending import pending_chunks, spilled
from .runner import TaskContext, Writer
from .settings import NoOptions, Settings, resolve_options
from .tasks import GenerativeTask, WorkItem

if TYPE_CHECKING:
    from .driving import Outcome


PROGRESS_EVERY_SECONDS = 0.1


class Executor:
    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Its own settings (a cluster's address...), given as -o name=value, PERSONAHUB_<NAME> or in personahub.toml.
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, settings: Settings):
        self.settings = settings
        self.options = self.options_from(settings)

    @classmethod
    def options_from(cls, settings: Settings) -> BaseModel:
        """This executor's options from the settings' sources; a bad value is a one-line usage error."""
        return resolve_options(cls.Options, settings)[0]

    def run_items(self, task: GenerativeTask, ctx: TaskContext, items: Iterable[WorkItem], label: str | None,
                  budget: int | None) -> int | None:
        """Drive at most ``budget`` (None: all) of the task's missing work items through ``execute``, store
        every outcome in this process, and return what is left of the budget. An executor that stores
        rows its own way (Ray writes shards) overrides this instead."""
        with spilled(pending_chunks(ctx, items, budget), folder=str(ctx.core_store.path.parent)) as (total, todo):
            if total:
                self._run(task, ctx, todo, total, label)
        return None if budget is None else budget - total

    def _run(self, task: GenerativeTask, ctx: TaskContext, todo: Iterator[WorkItem], total: int, label: str | None) -> None:
        writer = Writer(ctx, task, ctx.model_label())
        with ctx.progress(label or task.name, total=total) as progress:
            bar = progress.task_ids[0]
            started = shown = time.perf_counter()
            unshown = 0  # items done since the bar last moved: it redraws 10 times a second, not per item
            try:
                for outcome in self.execute(task, todo, ctx):
                    writer.add(outcome)
                    unshown += 1
                    if ctx.interrupted():
                        raise KeyboardInterrupt
                    if (now := time.perf_counter()) - shown >= PROGRESS_EVERY_SECONDS:
                        rate = ctx.stats.completion_tokens / max(now - started, 1e-6)
                        progress.update(bar, advance=unshown, extra=f"{rate:5.1f} tok/s")
                        shown, unshown = now, 0
            finally:
                progress.update(bar, advance=unshown)
                writer.flush()

    def execute(self, task: GenerativeTask, items: Iterator[WorkItem], ctx: TaskContext) -> Iterator["Outcome"]:
        """The outcome of every item, as each is final. ``items`` is a stream: take them as they are needed."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """In this process, with the context's backend (cached through the store), as one stream."""

    name = "local"
    description = "in this process, as one stream of prompts"

    def execute(self, task, items, ctx):
        return drive(task, items, ctx.backend, self.settings)
