"""A backend that talks to any OpenAI-compatible HTTP server: vLLM, llama.cpp server, Ollama, OpenAI.

Requests run in a thread pool, ``settings.batch_size`` in flight. Transient failures (429, 5xx, timeouts,
dropped connections, unparsable bodies) are retried with exponential backoff and full jitter; a request
that still fails becomes an error result. Only backend-wide problems (no server, bad key, unknown model or
endpoint) raise BackendError.
"""

from __future__ import annotations

import os
import random
import re
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, ClassVar, Iterator, TypeVar

import httpx
from pydantic import BaseModel, Field, field_validator

from personahub_core.backends.base import (
    Backend,
    BackendError,
    Completion,
    ModelInfo,
    Prompt,
)
from personahub_core.settings import Settings, redact, redact_url, url_with_host

T = TypeVar("T")
R = TypeVar("R")

RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx


class RequestFailed(Exception):
    """One request failed for good; the message is the one-line reason recorded with the result."""


class OpenAIOptions(BaseModel):
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="API key (else OPENAI_API_KEY)")
    openai_chat: bool = Field(True, description="chat endpoint (false: /completions with few-shot prompts)")
    request_timeout: float = Field(120.0, gt=0, description="HTTP timeout per request, seconds")
    max_retries: int = Field(5, ge=0, description="HTTP retries on 429 / 5xx / timeouts")
    n_ctx: int = Field(8192, ge=256, description="context length assumed when the server does not say")

    _url_with_host = field_validator("base_url")(url_with_host)


class OpenAIBackend(Backend):
    name = "openai"
    description = "OpenAI-compatible HTTP server (vLLM, llama.cpp server, Ollama, OpenAI)"
    Options = OpenAIOptions

    # Class attributes so tests can shrink the waits.
    backoff_base: ClassVar[float] = 0.5
    backoff_cap: ClassVar[float] = 30.0
    retry_after_cap: ClassVar[float] = 60.0
    embed_batch_size: ClassVar[int] = 64

    def __init__(self, settings: Settings) -> None:
        self.options = options = self.options_from(settings)
        if not options.base_url:
            raise BackendError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if not re.match(r"https?://", options.base_url):
            raise BackendError(f"--base-url must start with http:// or https:// (got {redact_url(options.base_url)!r})")
        if not settings.model:
            raise BackendError("--backend openai needs --model NAME (the model name the server serves)")
        self.base_url = options.base_url.rstrip("/")
        self.public_url = redact_url(self.base_url)  # what messages show: no user or password
        self.model = settings.model
        self.embedding_model = settings.embedding_model or settings.model
        self.settings = settings
        self.chat = options.openai_chat
        key = options.api_key or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._key = key
        self.client = httpx.Client(
            headers=headers,
            timeout=options.request_timeout,
            limits=httpx.Limits(max_connections=settings.batch_size, max_keepalive_connections=settings.batch_size),
        )
        self._context_length: int | None = None
        self._checked = False

    # -- Backend interface ---------------------------------------------------------------------------

    def info(self) -> ModelInfo:
        self._check_server()
        return ModelInfo(
            name=self.model,
            context_length=self._context_length or self.options.n_ctx,
            has_chat_template=self.chat,
        )

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        self._check_server()
        yield from self._in_pool(self._generate_one, prompts)

    def embed(self, texts: list[str]) -> list[list[float]]:
        self._check_server()
        size = self.embed_batch_size
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        vectors: list[list[list[float]]] = [[] for _ in batches]
        for i, batch_vectors in self._in_pool(self._embed_batch, batches):
            vectors[i] = batch_vectors
        return [v for batch in vectors for v in batch]

    def close(self) -> None:
        self.client.close()

    # -- one request ---------------------------------------------------------------------------------

    def _generate_one(self, prompt: Prompt, stop: threading.Event) -> Completion:
        use_chat = self.chat and prompt.chat is not None
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": prompt.max_tokens,
            "temperature": prompt.temperature,
            "top_p": prompt.top_p,
            "seed": prompt.seed,
        }
        if use_chat:
            body["messages"] = prompt.chat
        else:
            body["prompt"] = prompt.completion
        if prompt.stop:
            body["stop"] = list(prompt.stop)
        if prompt.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": prompt.json_schema},
            }

        def parse(data: Any) -> Completion:
            choice = data["choices"][0]
            text = choice["message"]["content"] if use_chat else choice["text"]
            usage = data.get("usage") or {}
            return Completion(
                text=text or "",
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            )

        try:
            return self._post("/chat/completions" if use_chat else "/completions", body, parse, stop)
        except RequestFailed as exc:
            return Completion(text="", finish_reason="error", error=str(exc))

    def _embed_batch(self, texts: list[str], stop: threading.Event) -> list[list[float]]:
        def parse(data: Any) -> list[list[float]]:
            items = sorted(data["data"], key=lambda d: d["index"])  # servers may answer out of order
            if [d["index"] for d in items] != list(range(len(texts))):
                raise ValueError(f"expected {len(texts)} embeddings, got {len(items)}")
            return [[float(x) for x in d["embedding"]] for d in items]

        try:
            return self._post("/embeddings", {"model": self.embedding_model, "input": texts}, parse, stop)
        except RequestFailed as exc:
            raise BackendError(f"embeddings failed: {exc}") from None

    def _post(self, path: str, body: dict, parse: Callable[[Any], R], stop: threading.Event) -> R:
        """POST with retries; return ``parse(json)`` or raise RequestFailed / BackendError.

        ``stop`` is set when the caller has gone away; a sleeping retry then gives up at once.
        """
        url = self.base_url + path
        shown = self.public_url + path
        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            detail = ""
            try:
                resp = self.client.post(url, json=body)
            except httpx.TimeoutException:
                reason = f"timed out ({self.options.request_timeout:g} s)"
            except httpx.TransportError as exc:
                reason, detail = "connection error", _describe(exc)
            else:
                if resp.status_code in (401, 403):
                    raise BackendError(f"authentication failed (HTTP {resp.status_code}) at {shown}: {self._message(resp)}")
                if resp.status_code == 404:  # wrong model name or an endpoint the server lacks
                    raise BackendError(f"HTTP 404 at {shown}: {self._message(resp)}")
                if resp.status_code >= 400:
                    reason, detail = f"HTTP {resp.status_code}", self._message(resp)
                    if resp.status_code < 500 and resp.status_code not in RETRYABLE_STATUS:
                        raise RequestFailed(f"{reason}: {detail}")  # the request itself is bad; retrying won't help
                    retry_after = _retry_after(resp)
                else:
                    try:
                        return parse(resp.json())
                    except KeyError as exc:
                        reason, detail = "malformed response", f"no {exc} field"
                    except (ValueError, IndexError, TypeError) as exc:
                        reason, detail = "malformed response", _describe(exc)
            if attempt + 1 < attempts and stop.wait(self._delay(attempt, retry_after)):
                raise RequestFailed("cancelled")
        suffix = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"{reason}{suffix}: {detail}" if detail else f"{reason}{suffix}"
        raise RequestFailed(_one_line(redact(message, self._key)))

    def _message(self, resp: httpx.Response) -> str:
        """The server's error message with keys and tokens masked: it is shown and stored with the row."""
        return redact(_server_message(resp), self._key)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        # Full jitter spreads out clients that all failed at once.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    # -- plumbing ------------------------------------------------------------------------------------

    def _check_server(self) -> None:
        """One cheap GET /models on first use: fail early on a dead URL or a bad key."""
        if self._checked:
            return
        url = f"{self.base_url}/models"
        try:
            resp = self.client.get(url)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise BackendError(f"cannot reach {self.public_url}: {redact(_describe(exc), self._key)}") from None
        except httpx.HTTPError:
            resp = None  # a slow or flaky /models is not fatal; requests have their own retries
        if resp is not None:
            if resp.status_code in (401, 403):
                raise BackendError(f"authentication failed (HTTP {resp.status_code}) at {self.public_url}/models: "
                                   f"{self._message(resp)}")
            if resp.status_code == 200:
                self._context_length = self._max_model_len(resp)
        self._checked = True

    def _max_model_len(self, resp: httpx.Response) -> int | None:
        """vLLM lists ``max_model_len`` per model; other servers don't say."""
        try:
            for entry in resp.json()["data"]:
                if entry.get("id") == self.model and entry.get("max_model_len"):
                    return int(entry["max_model_len"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def _in_pool(self, fn: Callable[[T, threading.Event], R], items: list[T]) -> Iterator[tuple[int, R]]:
        """Run ``fn`` over ``items`` with at most batch_size in flight; yield (index, result) as they finish."""
        stop = threading.Event()
        workers = max(1, min(self.settings.batch_size, len(items)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="personahub-openai")
        pending: dict[Future, int] = {}
        next_index = 0
        try:
            while next_index < len(items) or pending:
                # Submit lazily so a huge list doesn't become a huge queue of futures.
                while next_index < len(items) and len(pending) < workers:
                    pending[pool.submit(fn, items[next_index], stop)] = next_index
                    next_index += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            # Reached on error or when the caller stops early: wake sleeping retries and drop the rest.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)


def _retry_after(resp: httpx.Response) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` (OpenAI's, more precise), else
    ``Retry-After`` as seconds or as an HTTP date. None when absent or unreadable: back off instead."""
    try:
        return max(0.0, float(resp.headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = resp.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _server_message(resp: httpx.Response) -> str:
    """The error message a server put in its body ({"error": {"message": ...}} and friends), short."""
    try:
        err = resp.json()
    except ValueError:
        err = resp.text
    if isinstance(err, dict):
        err = err.get("error", err)
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or err
    return _one_line(str(err) or resp.reason_phrase, limit=200)


def _describe(exc: Exception) -> str:
    text = re.sub(r"\[Errno -?\d+\]\s*", "", str(exc)).strip().rstrip(".")
    return _one_line(text[:1].lower() + text[1:] if text else type(exc).__name__)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
