"""``personahub run --plugin TASK --dry-run``: what a run would do and cost, without a model and
without writing a byte to the store.

    the task's own work items (read-only store) ──> new / already done / failed earlier (to retry)
    a sample of their first prompts ──> prompt tokens (characters per token measured on earlier rows)
    max_tokens, and the mean of earlier rows ──> completion tokens
    tokens per second of earlier runs on this machine (runs table) ──> time, or "unknown"

A store that does not exist stays that way: a synthesizer on an empty store would first build
personas from the bundled corpus, so that plan is made in a throwaway in-memory store.
"""

from __future__ import annotations

import json
import random
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import Settings
from .store import Store
from .tasks import GenerativeTask, Task

if TYPE_CHECKING:
    from .plugins import Registry

PROMPT_SAMPLE = 64  # items whose prompts are built and measured
CHARS_PER_TOKEN = 4.0  # when no earlier row tells this model's ratio
STAGE_SCAN_LIMIT = 1_000_000  # work items counted at most


def plan(task: Task, settings: Settings, registry: Registry, *, limit: int | None = None,
         where: list[str] | None = None, retry_failed: bool = False) -> dict[str, Any]:
    """The dry run's summary (``--json`` prints it as the last line). ``registry`` is the command's: the
    installed tasks (for the bootstrap) and the backend the settings name (for the model's label)."""
    db = Path(settings.db)
    result: dict[str, Any] = {"task": task.name, "dry_run": True, "db": str(db), "store_exists": db.exists(), "stages": []}
    if db.exists():
        with Store(db, read_only=True) as store:
            empty = not store.persona_count()
            if task.kind == "synthesizer" and empty:
                result["stages"] = _bootstrap_plan(task, settings, registry, store, limit)
            else:
                result["stages"] = [_stage(task, store, settings, registry, limit, where, retry_failed)]
    elif task.kind == "synthesizer":
        result["stages"] = _bootstrap_plan(task, settings, registry, None, limit)
    else:
        result["notes"] = [f"{db} does not exist: a run would create it"]
        with Store(":memory:") as store:
            result["stages"] = [_stage(task, store, settings, registry, limit, where, retry_failed)]
    for key in ("items_new", "items_done", "items_to_retry", "items_to_run", "prompt_tokens",
                "completion_tokens_max", "completion_tokens_expected"):
        values = [s.get(key) for s in result["stages"]]
        result[key] = sum(v for v in values if v is not None) if any(v is not None for v in values) else None
    seconds = [s.get("seconds_expected") for s in result["stages"]]
    result["seconds_expected"] = None if any(s is None for s in seconds) else round(sum(seconds), 1)
    return result


def _bootstrap_plan(task: Task, settings: Settings, registry: Registry, store: Store | None,
                    limit: int | None) -> list[dict]:
    """The main job on an empty store: the bootstrap chain's persona source over the bundled corpus (its
    later steps deduplicate), then the task over about one persona per text (its prompts measured with
    the bundled sample personas)."""
    from .chains import bootstrap_chain
    from .ingest import ingest_paths
    from .sample_data import corpus_path, personas_path

    chain = bootstrap_chain(registry.tasks)
    source_cls, source_options = next((cls, options) for cls, options in chain if cls.kind == "source")
    later = [cls.name for cls, _ in chain if cls is not source_cls]
    with Store(":memory:") as scratch:
        if store is not None and store.document_count():
            scratch.add_documents(store.select_documents(("id", "content_hash", "text", "source_file")))
        else:
            ingest_paths(scratch, [corpus_path()], quiet=True)
        source = source_cls(source_cls.Options(**source_options))
        first = _stage(source, scratch, settings, registry, None, None, False)
        first["note"] = "the store has no personas: they are built from " + (
            "its documents" if store is not None and store.document_count()
            else "the bundled sample corpus") + " first" + (f", then {', '.join(later)}" if later else "")
        stand_ins = [json.loads(line)["persona"] for line in personas_path().read_text(encoding="utf-8").splitlines()
                     if line.strip()]
        scratch.insert_personas([{"id": f"stand-in-{i}", "persona": p, "origin": "import"} for i, p in enumerate(stand_ins)])
        second = _stage(task, scratch, settings, registry, None, None, False)
    # About one persona per text (fewer after dedup): scale the stand-ins' figures to that count.
    items = first["items_to_run"] if limit is None else min(first["items_to_run"], limit)
    scale = items / max(second["items_to_run"], 1)
    for key in ("items_new", "items_to_run", "prompt_tokens", "completion_tokens_max", "completion_tokens_expected"):
        if second.get(key) is not None:
            second[key] = round(second[key] * scale)
    second["items_done"] = 0
    if second.get("completion_tokens_per_second"):
        second["seconds_expected"] = round(second["completion_tokens_expected"] / second["completion_tokens_per_second"], 1)
    second["note"] = (f"about one persona per text ({first['items_to_run']}); prompts measured with {len(stand_ins)} bundled "
                      "sample personas standing in for the ones not made yet")
    return [first, second]


def _stage(task: Task, store: Store, settings: Settings, registry: Registry, limit: int | None,
           where: list[str] | None, retry_failed: bool) -> dict[str, Any]:
    from .runner import TaskContext

    stage: dict[str, Any] = {"task": task.name, "kind": task.kind}
    if not isinstance(task, GenerativeTask):
        stage["note"] = "does not call a language model: nothing to estimate"
        return stage
    ctx = TaskContext(store, settings, task, "dry-run", backend_class=registry.backend(settings.backend), limit=limit,
                      where=where, retry_failed=retry_failed, quiet=True)
    try:
        items = list(islice(task.planned_items(ctx), STAGE_SCAN_LIMIT))
    except NotImplementedError:
        stage["note"] = "its work items depend on its own results: cannot be counted ahead"
        return stage
    if task.planned_note:
        stage["note"] = task.planned_note
    statuses = store.generation_statuses([i.key for i in items])
    new = [i for i in items if i.key not in statuses]
    failed = [i for i in items if statuses.get(i.key, "ok") != "ok"]
    todo = new + failed if retry_failed else new
    if limit is not None:
        todo = todo[:limit]
    stage.update(items_new=len(new), items_done=sum(1 for s in statuses.values() if s == "ok"),
                 items_failed_earlier=len(failed), items_to_retry=len(failed) if retry_failed else 0,
                 items_to_run=len(todo))
    sample = random.Random(0).sample(todo, min(PROMPT_SAMPLE, len(todo)))
    # An item may need no call at all (a verifier that parses code): it yields no prompt.
    prompts = [p for p in (next(task.run_item(item), None) for item in sample) if p is not None]
    chars = [len(p.completion) for p in prompts]
    ratio, ratio_from = _chars_per_token(store, ctx.model_label(), task)
    mean_prompt = sum(chars) / len(chars) / ratio if chars else 0.0
    max_tokens = [settings.max_tokens or p.max_tokens for p in prompts]
    mean_max = sum(max_tokens) / len(max_tokens) if max_tokens else 0.0
    earlier = store.mean_completion_tokens(task.name)
    per_item = min(earlier[0], mean_max) if earlier[1] else mean_max
    speed, speed_from = _speed(store, settings, task.name)
    stage.update(
        prompt_tokens=round(mean_prompt * len(todo)),
        prompt_tokens_per_item=round(mean_prompt, 1),
        prompt_tokens_from=f"{len(prompts)} of the task's prompts at {ratio:.2f} characters a token ({ratio_from})",
        completion_tokens_max=round(mean_max * len(todo)),
        completion_tokens_expected=round(per_item * len(todo)),
        completion_tokens_from=(f"mean of {earlier[1]} earlier rows" if earlier[1] else "max_tokens (no earlier rows)"),
        completion_tokens_per_second=speed,
        speed_from=speed_from,
        seconds_expected=round(per_item * len(todo) / speed, 1) if speed else (0.0 if not todo else None),
    )
    if getattr(task, "attempts", 1) > 1:
        stage["retries_note"] = f"rejected answers are retried up to {task.attempts - 1} more time(s): real cost can be higher"
    return stage


def _chars_per_token(store: Store, model: str, task: GenerativeTask) -> tuple[float, str]:
    """Characters per prompt token, measured on this task's earlier one-call rows with this model: their
    prompts are rebuilt from the stored input and set against the prompt tokens the backend counted."""
    from .tasks import WorkItem

    rows = store.prompt_token_samples(task.name, model, PROMPT_SAMPLE)
    if rows is None:
        return CHARS_PER_TOKEN, "a typical ratio; this store keeps no item inputs"
    chars = tokens = 0
    for key, input_id, data, prompt_tokens in rows:
        chars += len(next(task.run_item(WorkItem(key, input_id, json.loads(data)))).completion)
        tokens += prompt_tokens
    if tokens:
        return chars / tokens, f"measured on {len(rows)} earlier rows of {model}"
    return CHARS_PER_TOKEN, "a typical ratio; no earlier rows of this task and model"


def _speed(store: Store, settings: Settings, task: str) -> tuple[float | None, str]:
    """Completion tokens per second of earlier finished runs with this backend and model: this task's
    runs if there are any, else any task's."""
    for only, label in ((task, f"earlier runs of {task}"), (None, "earlier runs of other tasks")):
        row = store.run_speed(settings.backend, settings.model or "", only)
        if row[2]:
            return round(row[0] / row[1], 1), f"{label} on this machine ({row[2]} runs)"
    return None, "unknown: no earlier run with this backend and model"
