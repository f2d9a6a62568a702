"""Running a task from Python: what ``personahub run`` does, without the command line around it."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from pydantic import BaseModel

from .errors import UsageError
from .plugin_migrations import migrate_plugins
from .plugins import Registry, get_registry
from .recipes import is_recipe_path, load_recipe
from .run_outcome import outcome
from .run_stats import RunStats
from .runner import TaskContext, new_run_id, stderr
from .where import parse as parse_where
from .settings import Settings, check_known, load_settings, with_options
from .status_file import StatusFile
from .store import Store
from .task_option_sources import check_task_tables, is_list, resolve_task_options, task_options
from .tasks import GenerativeTask, Task
from .terminal_text import markup_safe

def resolve_task(name: str) -> type[Task]:
    """An installed task by name, or the task a recipe file (``*.toml``) describes."""
    tasks = get_registry().tasks
    if is_recipe_path(name):
        recipe = load_recipe(name)
        if recipe.name in tasks:
            raise UsageError(f"{name}: name: '{recipe.name}' is an installed task; give the recipe another name")
        return recipe
    if name in tasks:
        return tasks[name]
    installed = ", ".join(sorted(tasks)) or "none"
    raise UsageError(f"unknown task '{name}' (installed tasks: {installed}){_not_loaded_hint(name)}")


def _not_loaded_hint(name: str) -> str:
    """A plugin of that name is installed but PERSONAHUB_LOAD_PLUGINS leaves it out: say so, else say
    where tasks come from."""
    import os
    from importlib import metadata

    allowed = os.environ.get("PERSONAHUB_LOAD_PLUGINS")
    if allowed is not None and name not in {n.strip() for n in allowed.split(",")}:
        for ep in metadata.entry_points(group="personahub", name=name):
            package = ep.dist.metadata["Name"] if ep.dist is not None else name
            return f"; plugin '{name}' ({package}) is installed but PERSONAHUB_LOAD_PLUGINS does not load it"
    return "; tasks come from plugins: install the package that provides it"


def option_flags(options_cls: type[BaseModel]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in options_cls.model_fields]


def parse_task_options(task_cls: type[Task], args: list[str]) -> BaseModel:
    """Turn ``--topic geometry --with-solution`` into the task's Options model (the command line only)."""
    return task_options(task_cls, flag_values(task_cls, args))


def flag_values(task_cls: type[Task], args: list[str]) -> dict[str, Any]:
    """``--topic geometry --with-solution`` as the task's option values by name, not yet validated."""
    fields = task_cls.Options.model_fields
    values: dict[str, Any] = {}
    known = ", ".join(option_flags(task_cls.Options)) or "none"
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise UsageError(f"unexpected argument {arg!r} for task '{task_cls.name}'")
        flag, _, inline = arg[2:].partition("=")
        name = flag.replace("-", "_")
        negated = name.startswith("no_") and name[3:] in fields and _is_bool(fields[name[3:]].annotation)
        if negated:
            values[name[3:]] = False
        elif name not in fields:
            raise UsageError(f"task '{task_cls.name}' has no option --{flag} (its options: {known})")
        elif _is_bool(fields[name].annotation) and not inline:
            values[name] = True
        else:
            if not inline:
                i += 1
                if i >= len(args):
                    raise UsageError(f"option --{flag} of task '{task_cls.name}' needs a value")
                inline = args[i]
            if is_list(fields[name].annotation):
                values.setdefault(name, []).extend(v.strip() for v in inline.split(",") if v.strip())
            else:
                values[name] = inline
        i += 1
    return values


def _is_bool(annotation) -> bool:
    return annotation is bool


def run(task_name: str, task_args: list[str], *, quiet: bool = False, limit: int | None = None,
        where: list[str] | None = None, retry_failed: bool = False, options: dict[str, Any] | None = None,
        **flags: Any) -> dict:
    """Run one task and return its summary (the ``--json`` line of ``personahub run``). The task's
    options come as command-line words (``task_args``) or by name (``options``); those not given there
    come from the environment, then ``personahub.toml``, as on the command line."""
    task, settings, _ = checked(task_name, task_args, limit, where, flags, options)
    with Store(settings.db) as store:
        store.limit_memory(settings.memory_limit)
        if task.kind == "synthesizer" and not store.scalar("SELECT count(*) FROM personas"):
            bootstrap_personas(store, settings, quiet)
        return run_in_store(task, store, settings, limit=limit, where=where,
                            retry_failed=retry_failed, quiet=quiet)


def dry_run(task_name: str, task_args: list[str], *, limit: int | None = None, where: list[str] | None = None,
            retry_failed: bool = False, **flags: Any) -> dict:
    """``personahub run --dry-run``: the same checks as a run, then the plan; nothing is written."""
    from .dry_run import plan

    task, settings, registry = checked(task_name, task_args, limit, where, flags)
    return plan(task, settings, registry, limit=limit, where=where, retry_failed=retry_failed)


def checked(task_name: str, task_args: list[str], limit: int | None, where: list[str] | None,
            flags: dict[str, Any], options: dict[str, Any] | None = None) -> tuple[Task, Settings, Registry]:
    """The task, settings and registry of a run, every option checked before anything is opened or
    written (the bootstrap makes personas): an unknown task, backend or executor, a bad option of the
    task (from the command line, the environment or the file) or the backend, a bad --limit or --where
    is a usage error before any work."""
    task_cls = resolve_task(task_name)
    registry = get_registry()
    for warning in check_task_tables(registry.tasks, task_cls):
        stderr.print(f"[yellow]warning:[/yellow] {markup_safe(warning)}", highlight=False)
    given = options if options is not None else flag_values(task_cls, task_args)
    model, _ = resolve_task_options(task_cls, given)
    _, settings = chosen_backend(load_settings(**flags), registry)
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    parse_where(where)
    if where and not task_cls.selects_personas:
        raise UsageError(f"--where: task '{task_cls.name}' ({task_cls.kind}) does not select personas, so it "
                         "cannot filter them; --where applies to synthesizers, expanders and deduplicators")
    return task_cls(model), settings, registry


def chosen_backend(settings: Settings, registry: Registry) -> tuple[type, Settings]:
    """The backend class the settings name, and the settings carrying its validated options and the
    named executor's."""
    backend_class = registry.backend(settings.backend)
    executor_class = registry.executor(settings.executor)
    components = [*registry.backends.values(), *registry.executors.values()]
    check_known(settings, {name for cls in components for name in cls.Options.model_fields})
    return backend_class, with_options(settings, backend_class.options_from(settings), executor_class.options_from(settings))


def run_in_store(task: Task, store: Store, settings: Settings, *, limit: int | None = None,
                 where: list[str] | None = None, retry_failed: bool = False, quiet: bool = False) -> dict:
    """Run a task in an open store with the backend and executor the settings name (resolved here, once,
    and handed down: nothing below the command looks in the registry)."""
    registry = get_registry()
    backend_class, settings = chosen_backend(settings, registry)
    migrate_plugins(store, registry)  # the plugins' own tables, before any of their tasks runs
    executor = registry.executor(settings.executor)(settings) if isinstance(task, GenerativeTask) else None
    run_id = new_run_id()
    ctx = TaskContext(store, settings, task, run_id, backend_class=backend_class, executor=executor,
                      limit=limit, where=where, retry_failed=retry_failed, quiet=quiet)
    store.start_run(run_id, task.name, settings.public(), task.options.model_dump(mode="json"))
    ctx.status = StatusFile(store.path, run_id, task.name)
    ctx.status.write(ctx.stats)
    started = time.perf_counter()
    status = "failed"
    with ctrl_c_remembered(store) as ctx.interrupted:
        try:
            task.run(ctx)
            if ctx.interrupted():  # a Ctrl-C that a library call swallowed still ends the run as interrupted
                raise KeyboardInterrupt
            status = outcome(ctx.stats)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) or ctx.interrupted():
                status = "interrupted"
            raise
        finally:
            seconds = time.perf_counter() - started
            s = ctx.stats
            try:
                ctx.close()  # first: closing, a backend notes what it saw (the requests it kept in flight)
            finally:
                store.finish_run(run_id, status, s.items_done, s.items_failed + s.items_rejected,
                                 s.completion_tokens, seconds, s.notes)
                ctx.status.remove()
    return summary(task, ctx.stats, seconds, run_id, settings, status) | {"slot_occupancy": slot_occupancy(ctx)}


def slot_occupancy(ctx: TaskContext) -> float | None:
    """Mean sequences decoded together / slots while work was queued, from a backend that counts it
    (llama.cpp's timings), looking through the completion cache in front of it; else None."""
    backend = getattr(ctx._backend, "inner", ctx._backend)  # only a backend the run built
    occupancy = getattr(getattr(backend, "timings", None), "occupancy", None)
    return None if occupancy is None else round(occupancy, 3)


_ctrl_c = threading.Event()
_stores: list[Store] = []  # stores whose running query a Ctrl-C must stop


def _on_ctrl_c(signum, frame):
    _ctrl_c.set()
    for store in _stores:
        store.con.interrupt()  # DuckDB alone does not reliably stop a query on SIGINT
    raise KeyboardInterrupt


@contextmanager
def ctrl_c_remembered(store: Store | None = None) -> Iterator[Callable[[], bool]]:
    """Ctrl-C raises KeyboardInterrupt as usual, stops the store's running query, and is remembered:
    DuckDB turns a Ctrl-C that lands inside a query into its own RuntimeError ("Query interrupted"),
    and a caught one would let the run go on and end "done". Inside this block any error after a
    Ctrl-C becomes a KeyboardInterrupt."""
    previous = signal.getsignal(signal.SIGINT)
    ours = previous is _on_ctrl_c  # nested: the outer block already listens
    if not ours and (threading.current_thread() is not threading.main_thread()
                     or previous is not signal.default_int_handler):
        yield lambda: False  # not ours to change: a thread, or a caller with its own handler
        return
    if not ours:
        _ctrl_c.clear()
        signal.signal(signal.SIGINT, _on_ctrl_c)
    if store is not None:
        _stores.append(store)
    try:
        yield _ctrl_c.is_set
    except Exception:
        if _ctrl_c.is_set():
            raise KeyboardInterrupt from None
        raise
    finally:
        if store is not None:
            _stores.remove(store)
        if not ours:
            signal.signal(signal.SIGINT, previous)


def summary(task: Task, s: RunStats, seconds: float, run_id: str, settings: Settings, status: str) -> dict:
    return {
        "task": task.name,
        "kind": task.kind,
        "status": status,
        "items_done": s.items_done,
        "items_failed": s.items_failed + s.items_rejected,
        "items_rejected": s.items_rejected,
        "items_skipped": s.items_skipped,
        "items_skipped_failed": s.items_skipped_failed,
        "personas_added": s.personas_added,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "cached_calls": s.cached_calls,
        "seconds": round(seconds, 2),
        "completion_tokens_per_second": round(s.completion_tokens / seconds, 2) if seconds > 0 else 0.0,
        "run_id": run_id,
        "db": str(settings.db),
        "notes": s.notes,
    }


def bootstrap_personas(store: Store, settings: Settings, quiet: bool) -> None:
    """The store has no personas: build them from the bundled sample corpus with the tasks that declare
    a ``bootstrap_step`` (a persona source, then a deduplicator, say), in order."""
    from .chains import bootstrap_chain
    from .ingest import ingest_paths
    from .sample_data import corpus_path

    chain = bootstrap_chain(get_registry().tasks)
    if not quiet:
        stderr.print("[bold]The store has no personas yet:[/bold] building them from the bundled sample corpus "
                     f"({', then '.join(cls.name for cls, _ in chain)}).")
    if not store.document_count():
        ingest_paths(store, [corpus_path()], quiet=quiet)
    for task_cls, options in chain:
        result = run_in_store(task_cls(task_cls.Options(**options)), store, settings, quiet=quiet)
        if not quiet:
            stderr.print(f"  {task_cls.name}: {result['items_done']} done, {result['items_failed']} failed, "
                         f"{result['personas_added']} personas added")
