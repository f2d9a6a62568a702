"""Building the backend a command resolved, with the completion cache in front of it."""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from typing import Any, Iterator

from ..settings import Settings
from ..keys import work_key
from .base import Backend, Completion, ModelInfo, Prompt


def make_backend(backend_cls: type[Backend], settings: Settings, store=None, on_note=None) -> Backend:
    """The backend the command resolved, built, with the store's completion cache in front of it."""
    backend = backend_cls(settings)
    backend.on_note = on_note
    if store is not None and settings.cache:
        backend = CachingBackend(backend, store)
    return backend


class CachingBackend(Backend):
    """Answers a call seen before from the store's llm_cache, keyed by model, prompt and sampling.

    New answers are buffered and written in one insert every PUT_EVERY answers or seconds (and at
    close): each insert costs about the same whatever its size. A kill loses at most the buffer,
    which only means asking the model again. A lookup scans the cache's keys, so when the cache was
    empty at the start only the keys this run wrote are looked up."""

    name = "cache"
    PUT_EVERY = 1000
    PUT_EVERY_SECONDS = 2.0
    # Hits a stream holds before it lets the caller take them: bounds memory when nearly every call hits.
    HITS_HELD = 1000
    LOOKUP_BATCH = 256  # prompts a stream takes from its caller and looks up in the store at once

    def __init__(self, inner: Backend, store):
        self.inner = inner
        self.store = store
        self._info: ModelInfo | None = None
        self._fresh: dict[str, tuple] = {}
        self._last_put = time.monotonic()
        self._cold = store.count("llm_cache") == 0
        self._written: set[str] = set()  # keys this run stored, while the cache started empty

    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = self.inner.info()
        return self._info

    def _key(self, prompt: Prompt) -> str:
        info = self.info()
        # The form actually sent depends on the chat template, so only that form goes into the key.
        sent = json.dumps(prompt.chat) if info.has_chat_template and prompt.chat else prompt.completion
        # The prompt goes in as its own hash: JSON-escaping kilobytes of prompt per call costs more.
        digest = hashlib.sha256(sent.encode()).hexdigest()
        return work_key(self.inner.name, info.name, digest, prompt.sampling(), prompt.json_schema)

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        keys = [self._key(p) for p in prompts]
        hits = self._stored(keys)
        misses = []
        for i, key in enumerate(keys):
            if key in hits:
                yield i, self._hit(hits[key])
            else:
                misses.append(i)
        if not misses:
            return
        for j, result in self.inner.generate([prompts[i] for i in misses]):
            self._remember(keys[misses[j]], result)
            yield misses[j], result
        self._flush_when_due()

    def stream(self, feed, slots: int) -> Iterator[tuple[Any, Completion]]:
        """Hits are answered at once, without taking a slot; misses go to the inner backend's stream.
        Prompts are looked up LOOKUP_BATCH at a time, one store query each, never one per prompt."""
        hits: deque[tuple[Any, Completion]] = deque()  # answered, to yield after the inner's next completion
        missed: deque[tuple[tuple[Any, str], Prompt]] = deque()  # looked up, for the inner's next free slot

        def misses() -> tuple[tuple[Any, str], Prompt] | None:
            while not missed and len(hits) < self.HITS_HELD:
                fed = []
                while len(fed) < self.LOOKUP_BATCH and (one := feed()) is not None:
                    fed.append(one)
                if not fed:
                    break
                keys = [self._key(prompt) for _, prompt in fed]
                stored = self._stored(keys)
                for (ticket, prompt), key in zip(fed, keys):
                    if key in stored:
                        hits.append((ticket, self._hit(stored[key])))
                    else:
                        missed.append(((ticket, key), prompt))
            # None: the caller has nothing now, or many answers wait (they go out first).
            return missed.popleft() if missed else None

        while True:
            for (ticket, key), result in self.inner.stream(misses, slots):
                self._remember(key, result)
                yield ticket, result
                while hits:
                    yield hits.popleft()
                self._flush_when_due()
            if not hits:
                return  # the inner stream ended with nothing in flight and nothing held: the caller is done
            while hits:  # the caller may have more once it has these (an item's next step)
                yield hits.popleft()

    def _stored(self, keys: list[str]) -> dict[str, tuple]:
        """The answers this cache holds for these keys: this run's own and the store's."""
        asked = [k for k in keys if k not in self._fresh and (not self._cold or k in self._written)]
        hits = self.store.cache_get(asked) if asked else {}
        hits.update({k: self._fresh[k][1:] for k in keys if k in self._fresh})
        return hits

    @staticmethod
    def _hit(stored: tuple) -> Completion:
        text, prompt_tokens, completion_tokens, finish = stored
        return Completion(text, finish, prompt_tokens, completion_tokens, cached=True)

    def _remember(self, key: str, result: Completion) -> None:
        if result.finish_reason != "error":
            self._fresh[key] = (key, result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason)

    def _flush_when_due(self) -> None:
        if len(self._fresh) >= self.PUT_EVERY or time.monotonic() - self._last_put > self.PUT_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.store.cache_put(list(self._fresh.values()))
        if self._cold:
            self._written.update(self._fresh)
        self._fresh.clear()
        self._last_put = time.monotonic()

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(texts)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.inner.close()
