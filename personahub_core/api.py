"""Running a task from Python: what ``personahub run`` does, without the command line around it."""

from __future__ import annotations

import time
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import UsageError
from .plugins import OUR_PACKAGES, get_registry
from .runner import RunStats, TaskContext, new_run_id, stderr
from .settings import Settings, load_settings
from .store import Store
from .tasks import Task

RUN_FLAGS = ("limit", "where", "retry_failed")


def resolve_task(name: str) -> type[Task]:
    tasks = get_registry().tasks
    if name in tasks:
        return tasks[name]
    installed = ", ".join(sorted(tasks)) or "none"
    hint = f"; install it with: pip install {OUR_PACKAGES[name]}" if name in OUR_PACKAGES else ""
    raise UsageError(f"unknown task '{name}' (installed tasks: {installed}){hint}")


def option_flags(options_cls: type[BaseModel]) -> list[str]:
    return ["--" + n.replace("_", "-") for n in options_cls.model_fields]


def parse_task_options(task_cls: type[Task], args: list[str]) -> BaseModel:
    """Turn ``--topic geometry --with-solution`` into the task's Options model."""
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
            if _is_list(fields[name].annotation):
                values.setdefault(name, []).extend(v.strip() for v in inline.split(",") if v.strip())
            else:
                values[name] = inline
        i += 1
    try:
        return task_cls.Options(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = "--" + "_".join(str(p) for p in err["loc"][:1]).replace("_", "-")
        raise UsageError(f"task '{task_cls.name}' option {field}: {err['msg']}") from None


def _is_bool(annotation) -> bool:
    return annotation is bool


def _is_list(annotation) -> bool:
    return typing.get_origin(annotation) is list


def run(task_name: str, task_args: list[str], *, quiet: bool = False, limit: int | None = None,
        where: list[str] | None = None, retry_failed: bool = False, **flags: Any) -> dict:
    """Run one task and return its summary (the ``--json`` line of ``personahub run``)."""
    task_cls = resolve_task(task_name)
    options = parse_task_options(task_cls, task_args)
    settings = load_settings(**flags)
    if limit is not None and limit < 0:
        raise UsageError("--limit must be 0 or more")
    with Store(settings.db) as store:
        if task_cls.kind == "synthesizer" and not store.scalar("SELECT count(*) FROM personas"):
            bootstrap_personas(store, settings, quiet)
        return run_in_store(task_cls(options), store, settings, limit=limit, where=where,
                            retry_failed=retry_failed, quiet=quiet)


def run_in_store(task: Task, store: Store, settings: Settings, *, limit: int | None = None,
                 where: list[str] | None = None, retry_failed: bool = False, quiet: bool = False) -> dict:
    run_id = new_run_id()
    ctx = TaskContext(store, settings, task, run_id, limit=limit, where=where, retry_failed=retry_failed, quiet=quiet)
    store.start_run(run_id, task.name, settings.model_dump(mode="json", exclude={"api_key"}),
                    task.options.model_dump(mode="json"))
    started = time.perf_counter()
    status = "failed"
    try:
        task.run(ctx)
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        seconds = time.perf_counter() - started
        s = ctx.stats
        store.finish_run(run_id, status, s.items_done, s.items_failed + s.items_rejected, s.completion_tokens, seconds)
        ctx.close()
    return summary(task, ctx.stats, seconds, run_id, settings)


def summary(task: Task, s: RunStats, seconds: float, run_id: str, settings: Settings) -> dict:
    return {
        "task": task.name,
        "kind": task.kind,
        "items_done": s.items_done,
        "items_failed": s.items_failed + s.items_rejected,
        "items_rejected": s.items_rejected,
        "items_skipped": s.items_skipped,
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
    """The store has no personas: build them from the bundled sample corpus, then deduplicate."""
    from .ingest import ingest_paths
    from .sample_data import corpus_path

    tasks = get_registry().tasks
    missing = [name for name in ("text-to-persona", "minhash") if name not in tasks]
    if missing:
        raise UsageError(
            "the store has no personas; import some (personahub run --plugin import --input FILE) or install "
            + " and ".join(OUR_PACKAGES[m] for m in missing)
        )
    if not quiet:
        stderr.print("[bold]The store has no personas yet:[/bold] building them from the bundled sample corpus "
                     "(text-to-persona, then minhash dedup).")
    if not store.scalar("SELECT count(*) FROM documents"):
        ingest_paths(store, [corpus_path()], quiet=quiet)
    # One persona per text (its writer) keeps the main job under ten minutes on two cores.
    for name, options in (("text-to-persona", {"perspectives": ["write"]}), ("minhash", {})):
        task_cls = tasks[name]
        result = run_in_store(task_cls(task_cls.Options(**options)), store, settings, quiet=quiet)
        if not quiet:
            stderr.print(f"  {name}: {result['items_done']} done, {result['items_failed']} failed, "
                         f"{result['personas_added']} personas added")
