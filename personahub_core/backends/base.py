"""What the runner asks of an LLM backend, and what it gets back.

A backend turns a batch of prompts into completions and a batch of texts into vectors. Each ``Prompt``
carries both forms; the backend uses ``chat`` when its model has a chat template and ``completion``
(the few-shot completion form) otherwise. The driver has filled in its sampling (temperature,
top_p, seed) before the backend sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

from pydantic import BaseModel

from ..calls import Completion, Prompt
from ..errors import PersonaHubError
from ..settings import NoOptions, resolve_options

__all__ = ["Backend", "BackendError", "Completion", "ModelInfo", "Prompt"]


class BackendError(PersonaHubError):
    """A backend cannot work at all (missing model, unreachable server, bad key). One line, shown as is."""


@dataclass
class ModelInfo:
    name: str
    context_length: int
    has_chat_template: bool


class Backend:
    """Base class of every backend. Subclasses set ``name`` and implement the three methods."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Settings of this backend only (llama.cpp's n_ctx, a server's base_url): set by flag, PERSONAHUB_<NAME>
    # or personahub.toml like any setting, shown by `personahub config`, validated when the backend is chosen.
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Where notes to the user go: a run sets it to its context's note (stderr and the run's notes).
    on_note: Callable[[str], None] | None = None

    def note(self, message: str) -> None:
        """Tell the user about something that changes the run, such as a setting this backend lowered."""
        if self.on_note is not None:
            self.on_note(message)

    @classmethod
    def options_from(cls, settings) -> BaseModel:
        """This backend's options from the settings' sources; a bad value is a one-line usage error."""
        return resolve_options(cls.Options, settings)[0]

    @classmethod
    def model_label(cls, settings) -> str:
        """The model's name as rows record it, known without loading the model (a Ray driver needs it
        while the actors hold the models). Must equal ``info().name``."""
        return settings.model or cls.name

    def info(self) -> ModelInfo:
        raise NotImplementedError

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into prompts, completion)`` as each prompt finishes, in any order.

        A prompt that fails on its own (bad output, server gave up) yields a completion with
        ``finish_reason="error"`` and ``error`` set; only a backend-wide failure raises BackendError.
        """
        raise NotImplementedError

    def stream(self, feed: Callable[[], tuple[Any, Prompt] | None], slots: int) -> Iterator[tuple[Any, Completion]]:
        """Keep up to ``slots`` prompts in flight, and yield ``(ticket, completion)`` as each one finishes.

        ``feed()`` gives the next ``(ticket, prompt)``, or None when the caller has nothing to send right
        now. The backend calls it whenever a slot is free. While prompts are in flight a later call may give
        more (the next step of an item whose completion was just yielded), so None with nothing in flight
        ends the stream. Failures are reported as in ``generate``.

        This default fills the slots, waits for the whole batch and fills them again: a backend that can
        admit a prompt into a freed slot at once overrides it.
        """
        while True:
            batch = []
            while len(batch) < slots and (fed := feed()) is not None:
                batch.append(fed)
            if not batch:
                return
            for index, completion in self.generate([prompt for _, prompt in batch]):
                yield batch[index][0], completion

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model or connections."""
