"""PersonaHub's public Python API, one flat namespace for plugin authors and notebooks.

    import personahub

    summary = personahub.run("math", {"topic": "geometry"}, limit=5, db="my.duckdb")
    with personahub.open_store("my.duckdb") as store:
        rows = store.rows("math").to_pandas()

A plugin subclasses ``personahub.Synthesizer`` (or another task kind), builds ``personahub.Prompt``s
and registers itself with ``@personahub.hookimpl``. ``personahub_core`` is the implementation: names
not listed here may change. See docs/python-api.md.
"""

from personahub_core import __version__
from personahub_core.backends.base import Backend, BackendError, ModelInfo
from personahub_core.calls import Completion, Prompt
from personahub_core.dedup import DedupOutline
from personahub_core.errors import PersonaHubError, UsageError
from personahub_core.executors import Executor
from personahub_core.export_formats import ExportFormat
from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import demonstrations
from personahub_core.python_api import OpenStore, open_store, run
from personahub_core.tasks import (Context, Deduplicator, GenerativeTask, NewPersona, PersonaExpander, PersonaSource,
                                   Rejected, Synthesis, Synthesizer, Task, WorkItem)

__all__ = [
    "Backend", "BackendError", "Completion", "Context", "DedupOutline", "Deduplicator", "Executor", "ExportFormat",
    "GenerativeTask",
    "ModelInfo", "NewPersona", "OpenStore", "PersonaExpander", "PersonaHubError", "PersonaSource", "Prompt",
    "Rejected", "Synthesis", "Synthesizer", "Task", "UsageError", "WorkItem", "__version__", "demonstrations",
    "hookimpl", "open_store", "run",
]
