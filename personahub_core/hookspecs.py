"""The hooks a PersonaHub plugin can implement.

Every hook passes a ``register`` callback, so the core owns name checks and duplicate handling.
The reference in docs/plugins/hooks.md is checked against these signatures by the test suite.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("personahub")
hookimpl = pluggy.HookimplMarker("personahub")


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register task classes: persona sources, expanders, deduplicators, synthesizers and verifiers.

    :param register: call ``register(TaskClass)`` once per class; the class is a subclass of
        ``personahub_core.tasks.Task`` with a unique ``name`` and a ``kind``.
    """


@hookspec
def register_backends(register: Callable[[type], None]) -> None:
    """Register LLM backend classes selectable with ``--backend NAME``.

    :param register: call ``register(BackendClass)``; the class subclasses
        ``personahub_core.backends.base.Backend``, has a unique ``name`` and is built as ``BackendClass(settings)``.
    """


@hookspec
def register_executors(register: Callable[[type], None]) -> None:
    """Register executors selectable with ``--executor NAME``.

    :param register: call ``register(ExecutorClass)``; the class subclasses
        ``personahub_core.executors.Executor`` and has a unique ``name``.
    """


@hookspec
def register_export_formats(register: Callable[[type], None]) -> None:
    """Register export formats selectable with ``personahub export --format NAME``.

    :param register: call ``register(FormatClass)``; the class subclasses
        ``personahub_core.export_formats.ExportFormat``, has a unique ``name`` and writes with ``write(...)``.
    """


@hookspec
def register_commands(cli) -> None:
    """Add commands to the ``personahub`` command line.

    :param cli: the ``typer.Typer`` application; decorate functions with ``@cli.command()``.
    """


@hookspec
def register_migrations(register: Callable[[str, list[str]], None]) -> None:
    """Declare the plugin's own tables as migrations: SQL run in order, each once per store.

    :param register: call ``register(owner, [sql, ...])`` once; ``owner`` names the plugin (unique), and
        its list only ever grows: the core runs, before the plugin's tasks, the statements a store has
        not run yet (recorded per owner in ``plugin_migrations``). Write ``CREATE TABLE IF NOT EXISTS``.
    """
