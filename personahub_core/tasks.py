"""The four kinds of task a plugin can register, and the small vocabulary they speak.

A plugin says *what*: its prompt (chat and completion forms), how to parse an answer, its options.
The core does *how*: choosing inputs, batching, calling the backend, caching, storing, resuming.

A generative task's ``run_item`` is a generator: it yields a ``Prompt``, receives a ``Completion``,
and returns its result. Multi-step work (solve after posing, several conversation turns) is just
several yields; the runner keeps the prompts of many items in flight together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generator, Iterable

from pydantic import BaseModel

from .calls import Completion, Prompt  # the vocabulary plugins import from here
from .settings import NoOptions

if TYPE_CHECKING:
    from .runner import TaskContext


class Rejected(Exception):
    """The model answered, but the answer is not usable. Stored with its raw text and this reason."""


@dataclass
class WorkItem:
    key: str  # deterministic: the same input and options always give the same key
    input_id: str | None
    data: dict[str, Any]
    earlier_runs: int = 0  # times this item already ran and failed: a retry must not get the same seeds


@dataclass
class Synthesis:
    """A synthesizer's result. ``text`` becomes PersonaHub's ``synthesized text``; ``fields`` hold the
    structured parts (title, solution, messages...) that ``export --full`` adds."""

    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    description: str | None = None  # PersonaHub's "description"; default: the task's row_description


@dataclass
class NewPersona:
    persona: str
    relation: str | None = None
    perspective: str | None = None
    note: str | None = None  # provenance detail, e.g. "source text truncated to 1500 chars"


def work_key(*parts: Any) -> str:
    """A short stable hash of the parts (JSON-encoded, so dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Task:
    """Base of every task. Subclasses set ``name``, ``kind`` and may declare an ``Options`` model."""

    name: ClassVar[str]
    kind: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    uses_backend: ClassVar[bool] = True
    # Works on the selected personas, so it honours --where; a task that does not (a source reads
    # documents or files) makes --where a usage error instead of ignoring it.
    selects_personas: ClassVar[bool] = False
    # Places in the chains the core runs without naming a plugin (personahub_core/chains.py):
    bootstrap_step: ClassVar[int | None] = None  # the main job's personas from the sample corpus, in order
    bootstrap_options: ClassVar[dict[str, Any]] = {}  # the options this task runs with there
    dedup_step: ClassVar[int | None] = None  # `personahub dedup`, in order
    dedup_measure: ClassVar[str | None] = None  # "jaccard" or "cosine": which threshold flag sets its own

    def __init__(self, options: BaseModel | None = None):
        self.options = options if options is not None else self.Options()

    def run(self, ctx: "TaskContext") -> None:
        raise NotImplementedError


class GenerativeTask(Task):
    """A task whose work items each go through the model. The core's runner drives it."""

    template: ClassVar[str] = ""
    template_version: ClassVar[str] = "1"
    attempts: ClassVar[int] = 2  # a Rejected answer is retried with a fresh seed this many times in all
    # "backend:model" of the run, set by the core (TaskContext) before any work item is made, so every
    # key carries it: the same work done by another model is new work.
    model_identity: str | None = None

    def work_items(self, ctx: "TaskContext") -> Iterable[WorkItem]:
        raise NotImplementedError

    def run_item(self, item: WorkItem) -> Generator[Prompt, Completion, Any]:
        """Yield prompts, receive completions, return the result (or raise Rejected).

        Runs wherever the executor puts it (this process or a Ray actor): use only ``item`` and
        ``self.options``, never the store.
        """
        raise NotImplementedError

    def run(self, ctx: "TaskContext") -> None:
        ctx.run_generative(self, self.work_items(ctx))

    def item_key(self, *parts: Any) -> str:
        """Key for a work item: task, template version, options, model and the item's own parts."""
        if self.model_identity is None:
            raise RuntimeError(f"{self.name}: item_key() before the run set the model (make keys inside work_items)")
        # The task's own parts are hashed once per model, not once per item (a rerun makes 10^5 keys).
        cached = getattr(self, "_key_head", None)
        if cached is None or cached[0] != self.model_identity:
            head = work_key(self.name, self.template_version, self.options.model_dump(mode="json"), self.model_identity)
            self._key_head = cached = (self.model_identity, head)
        return work_key(cached[1], *parts)


class PersonaSource(Task):
    """Makes personas from outside the persona table (documents, files). Generative ones also
    subclass GenerativeTask and return a list of NewPersona from ``run_item``."""

    kind = "source"


class PersonaExpander(GenerativeTask):
    """Makes new personas from existing ones; ``run_item`` returns a list of NewPersona."""

    kind = "expander"
    selects_personas = True


class Deduplicator(Task):
    """Marks personas as duplicates or rejects; never deletes."""

    kind = "deduplicator"
    selects_personas = True


class Synthesizer(GenerativeTask):
    """Turns each selected persona into one synthetic record.

    A one-step synthesizer defines ``prompt(persona)`` and ``parse(completion, persona)``: the whole
    ``Completion`` comes in, so a parser sees ``finish_reason`` (an answer cut at the token limit) as
    well as the text. Only a synthesizer with several steps overrides ``run_item``.
    """

    kind = "synthesizer"
    selects_personas = True
    # PersonaHub's released rows carry a short description of the task in "description".
    row_description: ClassVar[str] = ""

    def work_items(self, ctx: "TaskContext") -> Iterable[WorkItem]:
        for persona in ctx.select_personas():
            yield WorkItem(
                key=self.item_key(persona["id"], ctx.settings.seed),
                input_id=persona["id"],
                data={"persona": persona["persona"]},
            )

    def prompt(self, persona: str) -> Prompt:
        raise NotImplementedError

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        """The record in a completion, or Rejected with the reason."""
        raise NotImplementedError

    def run_item(self, item: WorkItem) -> Generator[Prompt, Completion, Synthesis]:
        persona = item.data["persona"]
        completion = yield self.prompt(persona)
        return self.parse(completion, persona)
