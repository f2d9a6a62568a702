"""Driving work items through a backend as a stream: each item's ``run_item`` generator yields prompts,
the backend keeps ``batch_size`` of them in flight, and each completion goes back to its item, whose next
prompt (if any) takes the freed slot before a new item does. Pure (no store, no registry), so any
executor can use it, in this process or in a Ray actor."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

from .backends.base import Backend
from .calls import Completion, Prompt
from .settings import Settings
from .keys import work_key
from .tasks import GenerativeTask, Rejected, WorkItem


@dataclass
class Outcome:
    """What became of one work item."""

    item: WorkItem
    status: str  # ok | rejected | failed
    result: Any = None
    error: str | None = None
    prompts: list[dict] = field(default_factory=list)
    raw_outputs: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    sampling: dict = field(default_factory=dict)
    cached_calls: int = 0
    finish_reasons: list[str] = field(default_factory=list)


def sampled(prompt: Prompt, settings: Settings, seed: int) -> Prompt:
    """The prompt as the backend gets it: what the task left as None takes the run's setting, and
    ``--max-tokens`` overrides the task's budget."""
    return replace(
        prompt,
        max_tokens=settings.max_tokens or prompt.max_tokens,
        temperature=settings.temperature if prompt.temperature is None else prompt.temperature,
        top_p=settings.top_p if prompt.top_p is None else prompt.top_p,
        seed=seed if prompt.seed is None else prompt.seed,
        stop=list(prompt.stop),
    )


def item_seed(base_seed: int, key: str, step: int, attempt: int) -> int:
    """Each call gets its own seed, fixed by the item and step, so results do not depend on batching."""
    return int(work_key(base_seed, key, step, attempt), 16) % (2**31 - 1)


class _Driving:
    """One item's generator in flight."""

    def __init__(self, task: GenerativeTask, item: WorkItem):
        self.task = task
        self.item = item
        self.attempt = 1
        self.outcome = Outcome(item=item, status="ok")
        self.started = time.perf_counter()
        self._restart()

    def _restart(self) -> None:
        self.gen = self.task.run_item(self.item)
        self.step = 0
        self.pending: Prompt | None = None
        self._advance(None)

    def _advance(self, completion: Completion | None) -> None:
        try:
            self.pending = next(self.gen) if completion is None else self.gen.send(completion)
        except StopIteration as stop:
            self.pending = None
            self.outcome.status, self.outcome.result = "ok", stop.value
        except Rejected as exc:
            self.pending = None
            if self.attempt < self.task.attempts:
                self.attempt += 1
                self._restart()
            else:
                self.outcome.status, self.outcome.error = "rejected", str(exc) or "rejected"
        except Exception as exc:  # a plugin bug fails this item, not the run
            self.pending = None
            self.outcome.status, self.outcome.error = "failed", f"{type(exc).__name__} in {self.task.name}: {exc}"

    def receive(self, completion: Completion) -> None:
        out = self.outcome
        out.raw_outputs.append(completion.text)
        out.finish_reasons.append(completion.finish_reason)
        out.prompt_tokens += completion.prompt_tokens
        out.completion_tokens += completion.completion_tokens
        out.cached_calls += int(completion.cached)
        if completion.finish_reason == "error":
            self.pending = None
            out.status, out.error = "failed", completion.error or "backend error"
            return
        self.step += 1
        self._advance(completion)

    def finished(self) -> Outcome:
        self.outcome.seconds = time.perf_counter() - self.started
        return self.outcome


def drive(task: GenerativeTask, items: Iterable[WorkItem], backend: Backend, settings: Settings) -> Iterator[Outcome]:
    """Run items to completion through ``backend.stream`` with ``settings.batch_size`` calls in flight,
    and yield each item's Outcome as soon as it is final.

    A new item is taken from ``items`` only when the backend has a free slot and no item in flight has
    its next step ready, so the iterable is read lazily and nothing holds more than the items in flight."""
    source = iter(items)
    ready: deque[_Driving] = deque()  # items whose next prompt waits for a slot
    finished: deque[_Driving] = deque()  # final, not yet yielded
    exhausted = False

    def feed() -> tuple[_Driving, Prompt] | None:
        nonlocal exhausted
        while not ready and not exhausted and len(finished) < settings.batch_size:
            item = next(source, None)
            if item is None:
                exhausted = True
                break
            d = _Driving(task, item)
            (finished if d.pending is None else ready).append(d)  # a run_item may end before its first prompt
        if not ready:
            return None  # nothing to send now: the items in flight may still have next steps
        d = ready.popleft()
        attempt = d.attempt + d.item.earlier_runs * task.attempts
        prompt = sampled(d.pending, settings, item_seed(settings.seed, d.item.key, d.step, attempt))
        # Rows record prompts under these keys (prompt_hash, export, replay): keep them.
        d.outcome.prompts.append({"prompt": prompt.completion, "messages": prompt.chat})
        d.outcome.sampling = prompt.sampling()
        return d, prompt

    while True:
        for d, completion in backend.stream(feed, settings.batch_size):
            d.receive(completion)
            (ready if d.pending is not None else finished).append(d)
            while finished:
                yield finished.popleft().finished()
        # The stream ends when nothing is in flight and feed() had nothing: either every item is done,
        # or items that ended without a prompt filled ``finished`` and wait to be yielded.
        while finished:
            yield finished.popleft().finished()
        if exhausted and not ready:
            return
