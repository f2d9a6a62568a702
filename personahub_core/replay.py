"""The prompts of a stored generation, rebuilt on request.

Rows do not keep their prompts (mostly the task's shared few-shot prefix, 1-5 KB a row): they keep the
item's input, the raw outputs and a hash of the prompts that were sent. Replaying the task's
``run_item`` generator with the stored outputs yields every step's prompt again, retries included;
the hash then says whether they are the prompts that were sent, which catches a template changed
without a version bump.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .tasks import Completion, GenerativeTask, Rejected, WorkItem


def replay_prompts(task: GenerativeTask, item: WorkItem, raw_outputs: list[str], finish_reasons: list[str]) -> list[dict]:
    """The prompts the runner sent for this item, in order, as the runner records them."""
    prompts: list[dict] = []
    while len(prompts) < len(raw_outputs):
        gen = task.run_item(item)  # a rejected answer restarted the item, as the runner does
        try:
            prompt = next(gen)
            while True:
                prompts.append({"prompt": prompt.completion, "messages": prompt.chat})
                step = len(prompts) - 1
                if step + 1 >= len(raw_outputs):
                    return prompts
                finish = finish_reasons[step] if step < len(finish_reasons) else "stop"
                if finish == "error":
                    return prompts
                prompt = gen.send(Completion(raw_outputs[step], finish))
        except Rejected:
            continue
        except Exception:  # the item ended here (done, or a plugin error)
            return prompts
    return prompts


def rebuild(row: dict[str, Any], tasks: dict[str, type]) -> tuple[list[dict] | None, str]:
    """(prompts, check) for a stored generation row; check is "ok", or says why not. ``tasks`` are the
    installed task classes by name, as the command's registry has them."""
    from .runner import prompt_hash

    if row.get("prompt") is not None:  # a row from before prompts stopped being stored
        return _load(row["prompt"]), "stored"
    data = _load(row.get("item_data"))
    if data is None:
        return None, "not stored and cannot be rebuilt (no item input)"
    try:
        task = _task(tasks, row["task"], _load(row.get("options")) or {})
    except Exception as exc:
        return None, f"cannot rebuild: {exc}"
    item = WorkItem(key=row["key"], input_id=row.get("input_id"), data=data["input"])
    prompts = replay_prompts(task, item, _load(row.get("raw_output")) or [], data.get("finish_reasons") or [])
    if prompt_hash(prompts) != row.get("prompt_hash"):
        return prompts, (f"mismatch: the prompts of {row['task']} template version {row.get('template_version')} "
                         "are not the ones sent (template changed without a version bump?)")
    return prompts, "ok"


def _task(tasks: dict[str, type], name: str, options: dict) -> GenerativeTask:
    if name not in tasks:
        raise LookupError(f"task '{name}' is not installed")
    cls = tasks[name]
    return cls(cls.Options.model_validate(options))


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def rebuilt_json(tasks: dict[str, type]) -> Callable[[list[dict]], list[str]]:
    """What an export carries for each of a batch of stored rows: JSON ``{"prompts": [...], "check": "ok"}``."""

    def rebuilt(rows: list[dict]) -> list[str]:
        made = []
        for row in rows:
            prompts, check = rebuild(row, tasks)
            made.append(json.dumps({"prompts": prompts, "check": check}, ensure_ascii=False))
        return made

    return rebuilt
