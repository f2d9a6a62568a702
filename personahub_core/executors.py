"""Executors: where a window of work items runs. The writer always stays in this process."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Iterator

from .errors import UsageError
from .settings import Settings
from .tasks import GenerativeTask, WorkItem

if TYPE_CHECKING:
    from .driving import Outcome
    from .runner import TaskContext


class Executor:
    name: ClassVar[str]

    def __init__(self, settings: Settings):
        self.settings = settings

    def execute(self, task: GenerativeTask, items: list[WorkItem], ctx: "TaskContext", window: int) -> Iterator["Outcome"]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """In this process, with the context's backend (cached through the store)."""

    name = "local"

    def execute(self, task, items, ctx, window):
        from .driving import drive

        for start in range(0, len(items), window):
            yield from drive(task, items[start : start + window], ctx.backend, self.settings)


def executor_class(settings: Settings) -> type[Executor]:
    """The registered executor the settings name, or a usage error listing the installed ones."""
    from .plugins import get_registry

    executors = get_registry().executors
    if settings.executor not in executors:
        raise UsageError(f"unknown executor '{settings.executor}'; installed: {', '.join(sorted(executors))}")
    return executors[settings.executor]


def make_executor(settings: Settings) -> Executor:
    return executor_class(settings)(settings)
