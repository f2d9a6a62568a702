"""A backend without a model: deterministic answers, for tests, dry runs and benchmarks of the data path."""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from typing import Any, Callable, ClassVar, Iterator

from ..settings import Settings
from .base import Backend, Completion, ModelInfo, Prompt


def example_for_schema(schema: dict, seed: str = "x") -> object:
    """A small value that satisfies a JSON schema (objects, arrays, strings, numbers, enums)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_for_schema(sub, f"{seed}-{name}") for name, sub in props.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {"type": "string"}), seed)] * max(schema.get("minItems", 1), 1)
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return f"{seed} value"


KEEP_CALLS = 2_000  # FakeBackend.calls keeps the latest prompts, for tests to inspect


class FakeBackend(Backend):
    """Deterministic answers without a model: the same prompt always gets the same text.

    Set ``FakeBackend.responder`` to a function of the prompt to script answers in a test, or the
    environment variable ``PERSONAHUB_FAKE_ANSWER`` to one fixed answer (for command-line tests), and
    ``FakeBackend.latency`` to script the order in which calls in flight finish.
    Prompts with a JSON schema get a value that satisfies it.
    """

    name = "fake"
    description = "deterministic answers for tests and dry runs; no model"
    responder: ClassVar[Callable[[Prompt], str] | None] = None
    latency: ClassVar[Callable[[Prompt], int] | None] = None  # steps a call takes in ``stream`` (default 1)
    calls: ClassVar[list[Prompt]] = []

    def __init__(self, settings: Settings | None = None):
        self.settings = settings

    @classmethod
    def model_label(cls, settings) -> str:
        return "fake"

    def info(self) -> ModelInfo:
        return ModelInfo(name="fake", context_length=4096, has_chat_template=False)

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        for i, prompt in enumerate(prompts):
            yield i, self.answer(prompt)

    def stream(self, feed, slots: int) -> Iterator[tuple[Any, Completion]]:
        """Admits a prompt into a freed slot at once. Each call takes ``latency(prompt)`` steps of a clock
        (1 unless a test sets ``FakeBackend.latency``); the one due first finishes next, ties in the order
        they were admitted. So a test can hold one call back and see the others go on around it."""
        flying: list[tuple[int, int, Any, Completion]] = []  # a heap: (due, admitted, ticket, completion)
        admitted = clock = 0
        while True:
            while len(flying) < slots and (fed := feed()) is not None:
                ticket, prompt = fed
                steps = FakeBackend.latency(prompt) if FakeBackend.latency is not None else 1
                heapq.heappush(flying, (clock + steps, admitted, ticket, self.answer(prompt)))
                admitted += 1
            if not flying:
                return
            clock, _, ticket, completion = heapq.heappop(flying)
            yield ticket, completion

    def answer(self, prompt: Prompt) -> Completion:
        calls = FakeBackend.calls
        if len(calls) > KEEP_CALLS:  # a long benchmark run must not keep every prompt it sent
            del calls[: len(calls) - KEEP_CALLS // 2]
        calls.append(prompt)
        if FakeBackend.responder is not None:
            text = FakeBackend.responder(prompt)
        elif "PERSONAHUB_FAKE_ANSWER" in os.environ:
            text = os.environ["PERSONAHUB_FAKE_ANSWER"]
        elif prompt.json_schema is not None:
            text = json.dumps(example_for_schema(prompt.json_schema))
        else:
            digest = hashlib.sha256(f"{prompt.completion}|{prompt.seed}".encode()).hexdigest()[:8]
            # A persona on the first line (what persona tasks keep), a problem after it: so synthesizers
            # that want something asked (math, reasoning) keep an answer too.
            text = f"A fake persona {digest} who tests data pipelines on weekends.\nHow many of their 12 pipelines pass?"
        words = text.split()  # a word stands for a token
        if len(words) > prompt.max_tokens:
            text, finish = " ".join(words[: prompt.max_tokens]), "length"
        else:
            finish = "stop"
        return Completion(text, finish, len(prompt.completion.split()), min(len(words), prompt.max_tokens))

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Bag-of-words hashed into 64 dimensions, L2-normalised: similar texts get close vectors."""
        vectors = []
        for text in texts:
            v = [0.0] * 64
            for word in text.lower().split():
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            vectors.append([x / norm for x in v])
        return vectors
