"""Building the configured backend, with the completion cache in front of it."""

from __future__ import annotations

import json
from typing import Iterator

from ..errors import UsageError
from ..settings import Settings
from ..tasks import work_key
from .base import Backend, GenerationRequest, GenerationResult, ModelInfo


def backend_class(settings: Settings) -> type[Backend]:
    from ..plugins import get_registry

    backends = get_registry().backends
    if settings.backend not in backends:
        raise UsageError(f"unknown backend '{settings.backend}'; installed: {', '.join(sorted(backends))}")
    return backends[settings.backend]


def make_backend(settings: Settings, store=None) -> Backend:
    backend = backend_class(settings)(settings)
    if store is not None and settings.cache:
        backend = CachingBackend(backend, store)
    return backend


class CachingBackend(Backend):
    """Answers a call seen before from the store's llm_cache, keyed by model, prompt and sampling."""

    name = "cache"

    def __init__(self, inner: Backend, store):
        self.inner = inner
        self.store = store
        self._info: ModelInfo | None = None

    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = self.inner.info()
        return self._info

    def _key(self, req: GenerationRequest) -> str:
        info = self.info()
        # The form actually sent depends on the chat template, so only that form goes into the key.
        sent = json.dumps(req.messages) if info.has_chat_template and req.messages else req.prompt
        return work_key(self.inner.name, info.name, sent, req.sampling(), req.json_schema)

    def generate(self, requests: list[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        keys = [self._key(r) for r in requests]
        hits = self.store.cache_get(keys)
        misses = []
        for i, key in enumerate(keys):
            if key in hits:
                text, pt, ct, finish = hits[key]
                yield i, GenerationResult(text, pt, ct, finish, cached=True)
            else:
                misses.append(i)
        if not misses:
            return
        fresh = []
        for j, result in self.inner.generate([requests[i] for i in misses]):
            i = misses[j]
            if result.finish_reason != "error":
                fresh.append((keys[i], result.text, result.prompt_tokens, result.completion_tokens, result.finish_reason))
                if len(fresh) >= 64:
                    self.store.cache_put(fresh)
                    fresh = []
            yield i, result
        self.store.cache_put(fresh)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(texts)

    def close(self) -> None:
        self.inner.close()
