"""What the runner asks of an LLM backend, and what it gets back.

A backend turns a batch of requests into completions and a batch of texts into vectors. Each request
carries both prompt forms; the backend uses ``messages`` when its model has a chat template and
``prompt`` (the few-shot completion form) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

from ..errors import PersonaHubError


class BackendError(PersonaHubError):
    """A backend cannot work at all (missing model, unreachable server, bad key). One line, shown as is."""


@dataclass
class GenerationRequest:
    prompt: str
    messages: list[dict] | None = None
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    json_schema: dict | None = None

    def sampling(self) -> dict:
        """The parameters that change the output, as recorded in provenance and cache keys."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
        }


@dataclass
class GenerationResult:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    error: str | None = None
    cached: bool = False


@dataclass
class ModelInfo:
    name: str
    context_length: int
    has_chat_template: bool


class Backend:
    """Base class of every backend. Subclasses set ``name`` and implement the three methods."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Where notes to the user go: a run sets it to its context's note (stderr and the run's notes).
    on_note: Callable[[str], None] | None = None

    def note(self, message: str) -> None:
        """Tell the user about something that changes the run, such as a setting this backend lowered."""
        if self.on_note is not None:
            self.on_note(message)

    @classmethod
    def model_label(cls, settings) -> str:
        """The model's name as rows record it, known without loading the model (a Ray driver needs it
        while the actors hold the models). Must equal ``info().name``."""
        return settings.model or cls.name

    def info(self) -> ModelInfo:
        raise NotImplementedError

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield ``(index into requests, result)`` as each request finishes, in any order.

        A request that fails on its own (bad output, server gave up) yields a result with
        ``finish_reason="error"`` and ``error`` set; only a backend-wide failure raises BackendError.
        """
        raise NotImplementedError

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the model or connections."""
