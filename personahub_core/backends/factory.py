"""Building the backend a command resolved, with the completion cache in front of it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterator

from ..settings import Settings
from ..tasks import work_key
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
        stored = [k for k in keys if k in self._written and k not in self._fresh] if self._cold else keys
        hits = self.store.cache_get(stored) if stored else {}
        hits.update({k: self._fresh[k][1:] for k in keys if k in self._fresh})
        misses = []
        for i, key in enumerate(keys):
            if key in hits:
                text, pt, ct, finish = hits[key]
                yield i, Completion(text, finish, pt, ct, cached=True)
            else:
                misses.append(i)
        if not misses:
            return
        for j, result in self.inner.generate([prompts[i] for i in misses]):
            i = misses[j]
            if result.finish_reason != "error":
                self._fresh[keys[i]] = (keys[i], result.text, result.prompt_tokens, result.completion_tokens,
                                        result.finish_reason)
            yield i, result
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
