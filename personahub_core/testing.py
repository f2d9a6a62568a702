"""A kit for plugin authors: a deterministic fake backend and a temporary store.

    from personahub_core.testing import FakeBackend, temporary_store, run_task

    def test_my_synthesizer(tmp_path):
        FakeBackend.responder = lambda request: "a problem"
        summary = run_task("my-task", db=tmp_path / "t.duckdb", backend="fake", limit=2)
        assert summary["items_done"] == 2
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .backends.fake import FakeBackend, example_for_schema  # noqa: F401  (the kit's public names)
from .store import Store


@contextmanager
def temporary_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(Path(tmp_path) / "test.duckdb")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def plugins_registered(*plugins: object) -> Iterator[object]:
    """Load the installed plugins plus these (modules or objects with hook implementations)."""
    from . import plugins as loader

    loader._registry = loader.load_plugins(extra=list(plugins))
    try:
        yield loader._registry
    finally:
        loader.reset_registry()


def run_task(task: str, task_args: list[str] | None = None, **flags) -> dict:
    """Run a task as ``personahub run --plugin TASK`` would and return its summary dict."""
    from .api import run

    return run(task, task_args or [], quiet=True, **flags)
