"""A backend that talks to any OpenAI-compatible HTTP server: vLLM, llama.cpp server, Ollama, OpenAI.

Requests run on one asyncio event loop in a background thread, through one aiohttp session built on first
use with its pool sized once (``--batch-size`` connections). ``stream`` keeps the slots full: the caller's
thread feeds a prompt whenever a slot is free and gets each completion as it finishes, so no request
waits on a slower one. Each attempt has a deadline for the whole request (connect and every read): a
server that drips bytes cannot hold a slot. Transient failures (429, 5xx, timeouts, dropped connections,
unparsable bodies) are retried with exponential backoff and full jitter; 429 and 503 also halve the
requests in flight, which then grow back one at a time (``pacing.py``). A request that still fails
becomes an error result. Only backend-wide problems (no server, bad key, unknown model or endpoint)
raise BackendError.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import random
import re
import threading
from concurrent.futures import Future
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Awaitable, Callable, ClassVar, Coroutine, Iterator, Mapping, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, Field, field_validator

from personahub_core.backends.base import (
    Backend,
    BackendError,
    Completion,
    ModelInfo,
    Prompt,
)
from personahub_core.backends.pacing import Concurrency, Pacing
from personahub_core.settings import Settings, redact, redact_url, url_with_host

T = TypeVar("T")
R = TypeVar("R")

RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx
OVERLOADED_STATUS = {429, 503}  # the server asks for fewer requests at once
CHARS_PER_TOKEN = 4  # a rough prompt size for --max-tokens-per-minute, before the server counts


class RequestFailed(Exception):
    """One request failed for good; the message is the one-line reason recorded with the result."""


class OpenAIOptions(BaseModel):
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key: str | None = Field(None, description="API key (else OPENAI_API_KEY)")
    openai_chat: bool = Field(True, description="chat endpoint (false: /completions with few-shot prompts)")
    request_timeout: float = Field(120.0, gt=0, description="deadline per HTTP request (connect and whole answer), seconds")
    max_retries: int = Field(5, ge=0, description="HTTP retries on 429 / 5xx / timeouts")
    n_ctx: int = Field(8192, ge=256, description="context length assumed when the server does not say")
    max_requests_per_minute: int | None = Field(None, ge=1, description="hosted APIs: start at most this many requests a minute")
    max_tokens_per_minute: int | None = Field(None, ge=1, description="hosted APIs: at most this many tokens a minute "
                                              "(prompt estimated at 4 characters a token, plus max tokens)")

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
        self.base_url, basic_auth = _without_credentials(options.base_url.rstrip("/"))
        self.public_url = redact_url(options.base_url.rstrip("/"))  # what messages show: no password, no key
        self.model = settings.model
        self.embedding_model = settings.embedding_model or settings.model
        self.settings = settings
        self.chat = options.openai_chat
        self._key = options.api_key or os.environ.get("OPENAI_API_KEY")
        # A key is sent as a bearer token even when the URL also holds user:password; those alone go as basic auth.
        self._authorization = f"Bearer {self._key}" if self._key else basic_auth
        self.concurrency = Concurrency(settings.batch_size)
        self.pacing = Pacing(options.max_requests_per_minute, options.max_tokens_per_minute)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._context_length: int | None = None
        self._checked = False

    # -- Backend interface ---------------------------------------------------------------------------

    def info(self) -> ModelInfo:
        self._start()
        return ModelInfo(
            name=self.model,
            context_length=self._context_length or self.options.n_ctx,
            has_chat_template=self.chat,
        )

    def stream(self, feed: Callable[[], tuple[Any, Prompt] | None], slots: int) -> Iterator[tuple[Any, Completion]]:
        self._start()
        self.concurrency.allow(slots)
        yield from self._flow(feed, self._generate_one, lambda: self.concurrency.limit)

    def generate(self, prompts: list[Prompt]) -> Iterator[tuple[int, Completion]]:
        numbered = iter(enumerate(prompts))
        yield from self.stream(lambda: next(numbered, None), self.settings.batch_size)

    def embed(self, texts: list[str]) -> list[list[float]]:
        self._start()
        size = self.embed_batch_size
        batches = iter(enumerate(texts[i : i + size] for i in range(0, len(texts), size)))
        vectors: dict[int, list[list[float]]] = {}
        for i, batch_vectors in self._flow(lambda: next(batches, None), self._embed_batch, lambda: self.settings.batch_size):
            vectors[i] = batch_vectors
        return [v for i in sorted(vectors) for v in vectors[i]]

    def close(self) -> None:
        if self._loop is None:
            return
        if self.concurrency.peak:
            self.note(f"openai: {self.concurrency.summary()}")
        self._run(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = self._session = None

    # -- the event loop ------------------------------------------------------------------------------

    def _start(self) -> None:
        """The event loop's thread and the session, once per backend; then check the server, once."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="personahub-openai", daemon=True)
            self._thread.start()
            self._session = self._run(self._open_session())
        if not self._checked:
            self._run(self._check_server())
            self._checked = True

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine on the loop and wait for its result here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open_session(self) -> aiohttp.ClientSession:
        size = self.settings.batch_size
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=size, limit_per_host=size),
            headers={"Authorization": self._authorization} if self._authorization else {},
            timeout=aiohttp.ClientTimeout(),  # no timeouts of its own: each attempt has a whole-request deadline
        )

    async def _shut_down(self) -> None:
        """Cancel what a caller left behind (it stopped early or failed), then close the connections."""
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._session.close()

    def _flow(self, feed: Callable[[], tuple[Any, T] | None], call: Callable[[T], Awaitable[R]],
              limit: Callable[[], int]) -> Iterator[tuple[Any, R]]:
        """Keep up to ``limit()`` calls running on the loop, fed from ``feed``; yield (ticket, result) as
        each one finishes. Runs in the caller's thread; results come back through a thread-safe queue."""
        finished: queue.SimpleQueue[tuple[Any, Future]] = queue.SimpleQueue()
        running: set[Future] = set()
        try:
            while True:
                while len(running) < limit() and (fed := feed()) is not None:
                    ticket, item = fed
                    future = asyncio.run_coroutine_threadsafe(call(item), self._loop)
                    future.add_done_callback(lambda done, ticket=ticket: finished.put((ticket, done)))
                    running.add(future)
                    self.concurrency.peak = max(self.concurrency.peak, len(running))
                if not running:
                    return
                ticket, future = finished.get()
                running.discard(future)
                yield ticket, future.result()
        finally:
            for future in running:  # the caller stopped early or a call failed for good
                future.cancel()

    # -- one request ---------------------------------------------------------------------------------

    async def _generate_one(self, prompt: Prompt) -> Completion:
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
        text = json.dumps(prompt.chat) if use_chat else prompt.completion
        tokens = len(text) // CHARS_PER_TOKEN + prompt.max_tokens

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
            return await self._post("/chat/completions" if use_chat else "/completions", body, parse, tokens)
        except RequestFailed as exc:
            return Completion(text="", finish_reason="error", error=str(exc))

    async def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        def parse(data: Any) -> list[list[float]]:
            items = sorted(data["data"], key=lambda d: d["index"])  # servers may answer out of order
            if [d["index"] for d in items] != list(range(len(texts))):
                raise ValueError(f"expected {len(texts)} embeddings, got {len(items)}")
            return [[float(x) for x in d["embedding"]] for d in items]

        tokens = sum(len(t) for t in texts) // CHARS_PER_TOKEN
        try:
            return await self._post("/embeddings", {"model": self.embedding_model, "input": texts}, parse, tokens)
        except RequestFailed as exc:
            raise BackendError(f"embeddings failed: {exc}") from None

    async def _post(self, path: str, body: dict, parse: Callable[[Any], R], tokens: int) -> R:
        """POST with retries; return ``parse(json)`` or raise RequestFailed / BackendError."""
        url = self._endpoint(path)
        shown = redact_url(url)
        attempts = self.options.max_retries + 1
        for attempt in range(attempts):
            await self.pacing.wait(tokens)
            epoch = self.concurrency.epoch
            retry_after: float | None = None
            detail = ""
            try:
                status, headers, raw = await self._request("POST", url, body)
            except TimeoutError:
                reason = f"timed out ({self.options.request_timeout:g} s)"
            except aiohttp.ClientError as exc:
                reason, detail = "connection error", _describe(exc)
            else:
                if status in (401, 403):
                    raise BackendError(f"authentication failed (HTTP {status}) at {shown}: {self._message(raw)}")
                if status == 404:  # wrong model name or an endpoint the server lacks
                    raise BackendError(f"HTTP 404 at {shown}: {self._message(raw)}")
                if status >= 400:
                    reason, detail = f"HTTP {status}", self._message(raw)
                    if status < 500 and status not in RETRYABLE_STATUS:
                        raise RequestFailed(f"{reason}: {detail}")  # the request itself is bad; retrying won't help
                    retry_after = _retry_after(headers)
                    if status in OVERLOADED_STATUS:
                        self.concurrency.lower(epoch, reason)
                        if retry_after is not None:
                            self.pacing.pause(min(retry_after, self.retry_after_cap))
                else:
                    try:
                        result = parse(json.loads(raw))
                    except KeyError as exc:
                        reason, detail = "malformed response", f"no {exc} field"
                    except (ValueError, IndexError, TypeError) as exc:
                        reason, detail = "malformed response", _describe(exc)
                    else:
                        self.concurrency.answered()
                        return result
            if attempt + 1 < attempts:
                await asyncio.sleep(self._delay(attempt, retry_after))
        suffix = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"{reason}{suffix}: {detail}" if detail else f"{reason}{suffix}"
        raise RequestFailed(_one_line(redact(message, self._key)))

    async def _request(self, method: str, url: str, body: dict | None = None) -> tuple[int, Mapping[str, str], bytes]:
        """One HTTP exchange read to its end, within the deadline for the whole of it."""
        async with asyncio.timeout(self.options.request_timeout):
            async with self._session.request(method, url, json=body) as resp:
                return resp.status, resp.headers, await resp.read()

    def _endpoint(self, path: str) -> str:
        """The base URL with ``path`` added to its path; its query (``?api-version=...&api-key=...``) kept."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))

    def _message(self, raw: bytes) -> str:
        """The server's error message with keys and tokens masked: it is shown and stored with the row."""
        return redact(_server_message(raw), self._key)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        # Full jitter spreads out clients that all failed at once.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    # -- plumbing ------------------------------------------------------------------------------------

    async def _check_server(self) -> None:
        """One cheap GET /models on first use: fail early on a dead URL or a bad key."""
        try:
            status, _, raw = await self._request("GET", self._endpoint("/models"))
        except aiohttp.ClientConnectorError as exc:
            raise BackendError(f"cannot reach {self.public_url}: {redact(_describe(exc), self._key)}") from None
        except (aiohttp.ClientError, TimeoutError):
            return  # a slow or flaky /models is not fatal; requests have their own retries
        if status in (401, 403):
            raise BackendError(f"authentication failed (HTTP {status}) at {redact_url(self._endpoint('/models'))}: "
                               f"{self._message(raw)}")
        if status == 200:
            self._context_length = self._max_model_len(raw)

    def _max_model_len(self, raw: bytes) -> int | None:
        """vLLM lists ``max_model_len`` per model; other servers don't say."""
        try:
            for entry in json.loads(raw)["data"]:
                if entry.get("id") == self.model and entry.get("max_model_len"):
                    return int(entry["max_model_len"])
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return None


def _without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without ``user:password@`` (which may hold an ``@`` of its own), and those as a basic
    Authorization header."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{unquote(user)}:{unquote(password)}".encode()
    return urlunsplit(parts._replace(netloc=host)), "Basic " + base64.b64encode(pair).decode()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms`` (OpenAI's, more precise), else
    ``Retry-After`` as seconds or as an HTTP date. None when absent or unreadable: back off instead."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        pass
    value = headers.get("retry-after", "").strip()
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


def _server_message(raw: bytes) -> str:
    """The error message a server put in its body ({"error": {"message": ...}} and friends), short."""
    try:
        err = json.loads(raw)
    except ValueError:
        err = raw.decode("utf-8", errors="replace")
    if isinstance(err, dict):
        err = err.get("error", err)
    if isinstance(err, dict):
        err = err.get("message") or err.get("detail") or err
    return _one_line(str(err) or "no message", limit=200)


def _describe(exc: Exception) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError) and exc.errno:
        return os.strerror(exc.errno).lower()  # its own text names the address, not why ("connection refused")
    text = re.sub(r"\[Errno -?\d+\]\s*", "", str(exc)).strip().rstrip(".")
    return _one_line(text[:1].lower() + text[1:] if text else type(exc).__name__)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
