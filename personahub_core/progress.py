"""Progress bars for the long steps outside the runner (export, report, embedding): counts and rates
on stderr, off with -q and --json so stdout stays a clean JSON line."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from .terminal_text import plain

stderr = Console(stderr=True, soft_wrap=True)


class LabelColumn(ProgressColumn):
    """The bar's label in bold, shown as text: labels carry task and file names, never markup."""

    def render(self, task) -> Text:
        return Text(plain(task.description), style="bold")


class _RateColumn(TextColumn):
    """Items per second, from rich's own speed estimate."""

    def __init__(self, unit: str) -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f} {self.unit}/s" if speed else ""


def progress_bar(description: str, total: int | None = None, *, quiet: bool = False, unit: str = "rows") -> Progress:
    """A Progress with one task already added (``progress.task_ids[0]``); use it as a context manager."""
    progress = Progress(
        LabelColumn(), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
        _RateColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(),
        console=stderr, disable=quiet, transient=False,
    )
    progress.add_task(description, total=total, extra="")
    return progress
