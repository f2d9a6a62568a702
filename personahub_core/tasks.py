"""The four kinds of task a plugin can register, and the small vocabulary they speak.

A plugin says *what*: its prompt (chat and completion forms), how to parse an answer, its options.
The core does *how*: choosing inputs, batching, calling the backend, caching, storing, resuming.

A generative task's ``run_item`` is a generator: it yields a ``Prompt``, receives a ``Completion``,
and returns its result. Multi-step work (solve after posing, several conversation turns) is just
several yields; the runner keeps the prompts of many items in flight together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generator, Iterable, Iterator, Protocol

from pydantic import BaseModel, ConfigDict, Field

from .calls import Completion, Prompt  # the vocabulary plugins import from here
from .keys import work_key  # noqa: F401 (plugins import it from here)
from .run_stats import RunStats
from .settings import NoOptions, Settings

if TYPE_CHECKING:
    from .backends.base import Backend
    from .store import PluginStore


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
class Verdict:
    """A verifier's judgement of one stored row. ``passed`` is what ``export --verified`` keeps by;
    ``score`` (a judge's 1-5) and ``agreement`` (the share of solutions agreeing) are what
    ``--where 'score>=4'`` selects on; ``fields`` hold the details (answers, reasons...)."""

    passed: bool
    score: float | None = None
    agreement: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class NewPersona:
    persona: str
    relation: str | None = None
    perspective: str | None = None
    note: str | None = None  # provenance detail, e.g. "source text truncated to 1500 chars"


class Context(Protocol):
    """What a task receives while it runs: ``personahub_core.runner.TaskContext`` in a run, the same
    minus an executor in a dry run. Declared here so a task never imports the runner."""

    store: "PluginStore"  # the plugin API only (docs/plugins/store-api.md)
    settings: Settings
    run_id: str
    where: list[str]  # the run's --where, for a task that selects personas its own way
    limit: int | None  # the run's --limit (new work items at most); read it, never change it
    retry_failed: bool
    quiet: bool
    stats: RunStats
    backend_class: type["Backend"]

    @property
    def backend(self) -> "Backend": ...

    def model_identity(self) -> str: ...

    def model_label(self) -> str: ...

    def select_personas(self) -> Iterator[dict]: ...

    def select_rows(self, task: str) -> Iterator[dict]: ...

    def run_generative(self, task: "GenerativeTask", items: Iterable[WorkItem], label: str | None = None,
                       budget: int | None = None) -> int | None: ...

    def note(self, message: str) -> None: ...


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

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


class GenerativeTask(Task):
    """A task whose work items each go through the model. The core's runner drives it."""

    template: ClassVar[str] = ""
    template_version: ClassVar[str] = "1"
    attempts: ClassVar[int] = 2  # a Rejected answer is retried with a fresh seed this many times in all
    planned_note: ClassVar[str | None] = None  # what planned_items leaves out, when not all of the work

    def work_items(self, ctx: Context) -> Iterable[WorkItem]:
        raise NotImplementedError

    def planned_items(self, ctx: Context) -> Iterable[WorkItem]:
        """The work items ``run --dry-run`` counts. A task whose later items depend on its own results
        (hops) plans its first stage and says so in ``planned_note``; one that cannot plan any raises
        NotImplementedError."""
        return self.work_items(ctx)

    def run_item(self, item: WorkItem) -> Generator[Prompt, Completion, Any]:
        """Yield prompts, receive completions, return the result (or raise Rejected).

        Runs wherever the executor puts it (this process or a Ray actor): use only ``item`` and
        ``self.options``, never the store.
        """
        raise NotImplementedError

    def run(self, ctx: Context) -> None:
        ctx.run_generative(self, self.work_items(ctx), budget=ctx.limit)

    def item_key(self, ctx: Context, *parts: Any) -> str:
        """Key for a work item: task, template version, options, the context's model ("backend:model":
        the same work done by another model is new work) and the item's own parts."""
        model = ctx.model_identity()
        # The task's own parts are hashed once per model, not once per item (a rerun makes 10^5 keys).
        cached = getattr(self, "_key_head", None)
        if cached is None or cached[0] != model:
            head = work_key(self.name, self.template_version, self.options.model_dump(mode="json"), model)
            self._key_head = cached = (model, head)
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


class VerifierOptions(BaseModel):
    """Options every verifier shares: the task whose stored rows it judges."""

    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="the task whose stored rows are judged, e.g. math")


class Verifier(GenerativeTask):
    """Judges the finished rows of another task (``--task``): one work item per row, keyed by that row's
    key, and ``run_item`` returns a Verdict. Verdicts are rows like any other, of the verifier's task."""

    kind = "verifier"
    Options: ClassVar[type[BaseModel]] = VerifierOptions

    def work_items(self, ctx: Context) -> Iterable[WorkItem]:
        skipped = 0
        for row in ctx.select_rows(self.options.task):
            if (data := self.item_data(row)) is None:
                skipped += 1
            else:
                yield WorkItem(key=self.item_key(ctx, row["key"], ctx.settings.seed), input_id=row["key"], data=data)
        if skipped:
            ctx.note(f"{self.name}: {skipped} rows of {self.options.task} have nothing it can check")

    def item_data(self, row: dict) -> dict | None:
        """What ``run_item`` needs of a stored row (``persona``, ``text``, ``output``), or None to skip it
        (by default, rows without a synthesized text: personas, or another verifier's verdicts)."""
        return None if row["text"] is None else {"persona": row["persona"], "text": row["text"]}


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

    def work_items(self, ctx: Context) -> Iterable[WorkItem]:
        for persona in ctx.select_personas():
            yield WorkItem(
                key=self.item_key(ctx, persona["id"], ctx.settings.seed),
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

    @classmethod
    def released_text(cls, text: str) -> str:
        """The stored ``synthesized text`` as every export writes it. A task whose released rows encode
        it differently (tools: a JSON string holding the tool's JSON) overrides this."""
        return text
