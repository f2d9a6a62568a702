"""Building the configured backend, with the completion cache in front of it."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Iterator

from ..errors import UsageError
from ..settings import Settings
from ..tasks import work_key
from .base import Backend, GenerationRequest, GenerationResult, ModelInfo


def backend_class(settings: Settings) -> type[Backend]:
    """The registered backend the settings name, or a usage error listing the installed ones."""
    from ..plugins import get_registry

    backends = get_registry().backends
    if settings.backend not in backends:
        raise UsageError(f"unknown backend '{settings.backend}'; installed: {', '.join(sorted(backends))}")
    return backends[settings.backend]


def make_backend(settings: Settings, store=None, on_note=None) -> Backend:
    backend = backend_class(settings)(settings)
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

    def _key(self, req: GenerationRequest) -> str:
        info = self.info()
        # The form actually sent depends on the chat template, so only that form goes into the key.
        sent = json.dumps(req.messages) if info.has_chat_template and req.messages else req.prompt
        # The prompt goes in as its own hash: JSON-escaping kilobytes of prompt per call costs more.
        digest = hashlib.sha256(sent.encode()).hexdigest()
        return work_key(self.inner.name, info.name, digest, req.sampling(), req.json_schema)

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        keys = [self._key(r) for r in requests]
        stored = [k for k in keys if k in self._written and k not in self._fresh] if self._cold else keys
        hits = self.store.cache_get(stored) if stored else {}
        hits.update({k: self._fresh[k][1:] for k in keys if k in self._fresh})
        misses = []
        for i, key in enumerate(keys):
            if key in hits:
                text, pt, ct, finish = hits[key]
                yield i, GenerationResult(text, pt, ct, finish, cached=True)
            else:
                misses.append(i)
        if not misses:
            return
        for j, result in self.inner.generate([requests[i] for i in misses]):
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
