"""The one vocabulary of a model call, shared by tasks, the driver, the cache and every backend.

A task yields a ``Prompt`` and receives a ``Completion``; the driver fills in the prompt's sampling
(what the task left as None takes the run's setting) and hands the same ``Prompt`` to the backend,
which answers with a ``Completion``. A leaf module: it imports nothing else of the core.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Prompt:
    """One call to the model, in both forms: the backend sends ``chat`` when its model has a chat
    template and ``completion`` (the few-shot completion form) otherwise."""

    completion: str
    chat: list[dict] | None = None
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    json_schema: dict | None = None
    # None: the run's setting, filled in by the driver before a backend sees the prompt.
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

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
class Completion:
    """The model's answer to one prompt. A call that failed on its own has ``finish_reason="error"``."""

    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False
