"""A small OpenAI-compatible server for tests that fails on a deterministic schedule.

Each request has a key (the last chat message, the prompt, or the first embedding input). ``faults`` maps
a key to the faults its 1st, 2nd, ... attempts suffer; later attempts succeed. Faults:

- ``"500"``: HTTP 500 with an OpenAI-style error body
- ``"400"``: HTTP 400, as for a prompt longer than the context
- ``"429"`` / ``"429:N"``: HTTP 429 with ``Retry-After: N`` (default 0)
- ``"429-date:N"``: HTTP 429 with ``Retry-After`` an HTTP date at least N seconds ahead
- ``"429-ms:N"``: HTTP 429 with ``retry-after-ms: N`` and ``Retry-After: 0`` (as OpenAI sends both)
- ``"500-secret"``: HTTP 500 whose error body quotes an API key and a bearer token
- ``"drop"``: close the connection without answering
- ``"slow"``: answer after ``slow_seconds`` (longer than the client's timeout)
- ``"garbage"``: HTTP 200 with a body that is not JSON
- ``"drip"``: HTTP 200 headers, then one byte of body every 0.2 s until the client leaves
- ``"hold"``: answer only once every other request of the run (``total`` in all) has been answered

Beyond faults, the server counts the requests open at once (``max_open``, ``mean_open``, also served as
``GET /stats`` for a server in another process, with the requests received under ``?bodies=1``), can answer after a ``latency(body)`` of its own with a ``reply(key)`` of its
own (a vLLM-like server for the benchmark), and with ``lockstep=N`` answers one request at a time, the oldest,
and only while ``min(N, requests left)`` are open: a client that does not refill a freed slot at once
stalls it.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Received:
    path: str
    body: dict
    key: str
    at: float  # time.monotonic() on arrival


class FaultServer:
    def __init__(
        self,
        faults: dict[str, list[str]] | None = None,
        api_key: str | None = None,
        has_models: bool = True,
        max_model_len: int | None = None,
        slow_seconds: float = 1.0,
        every: list[str] | None = None,
        latency: Callable[[dict], float] | None = None,
        total: int | None = None,
        lockstep: int | None = None,
        reply: Callable[[str], str] | None = None,
    ) -> None:
        self.faults = faults or {}
        self.every = every or []  # the faults of every key not in ``faults``
        self.api_key = api_key
        self.has_models = has_models
        self.max_model_len = max_model_len
        self.slow_seconds = slow_seconds
        self.latency = latency
        self.total = total  # requests the run will make: what "hold" and lockstep count down from
        self.lockstep = lockstep
        self.reply = reply or (lambda key: f"echo: {key}")  # the answer's text, from the request's key
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.answered = 0
        self.open = 0
        self.max_open = 0
        self.seen_open: list[int] = []  # with lockstep: the requests open when each answer was released
        self._waiting: list[int] = []  # arrival numbers of the open requests, oldest first
        self._arrivals = 0
        self._area = 0.0  # integral of open requests over time, for the mean
        self._first = self._last = 0.0
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def arrivals(self, key: str) -> list[float]:
        with self.lock:
            return [r.at for r in self.received if r.key == key]

    def next_fault(self, path: str, body: dict, key: str) -> str | None:
        with self.lock:
            self.received.append(Received(path, body, key, time.monotonic()))
            attempt = self.attempts[key]
            self.attempts[key] += 1
        planned = self.faults.get(key, self.every)
        return planned[attempt] if attempt < len(planned) else None

    @property
    def mean_open(self) -> float:
        """Requests open at once, averaged over the time from the first arrival to the last answer."""
        with self.lock:
            return self._area / (self._last - self._first) if self._last > self._first else 0.0

    @property
    def busy_seconds(self) -> float:
        """From the first arrival to the last answer: the time a client kept this server working."""
        with self.lock:
            return self._last - self._first

    def _count_open(self, change: int) -> None:
        """Under the lock: a request arrived (+1) or was answered (-1)."""
        now = time.monotonic()
        if not self._first:
            self._first = now
        self._area += self.open * (now - self._last) if self._last else 0.0
        self._last = now
        self.open += change
        self.max_open = max(self.max_open, self.open)
        if change < 0:
            self.answered += 1
        self.changed.notify_all()

    def arrive(self) -> int:
        with self.lock:
            self._count_open(+1)
            self._arrivals += 1
            self._waiting.append(self._arrivals)
            return self._arrivals

    def leave(self, number: int, hold: bool = False) -> None:
        """Count the request as answered, first waiting for its turn: with ``hold`` until every other
        request is answered, with lockstep until it is the oldest and enough are open."""
        with self.lock:
            if hold:
                self.changed.wait_for(lambda: self.answered >= (self.total or 1) - 1)
            if self.lockstep:
                self.changed.wait_for(lambda: self._waiting[0] == number and
                                      self.open >= min(self.lockstep, (self.total or 0) - self.answered))
                self.seen_open.append(self.open)
            self._waiting.remove(number)
            self._count_open(-1)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of clients connect at once in the benchmark

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out or give up reset their connections; that is expected here


def _key(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        return str(body["messages"][-1]["content"])
    if path.endswith("/completions"):
        return str(body["prompt"])
    return str(body["input"][0])


def _answer(path: str, body: dict, key: str, text: str) -> dict[str, Any]:
    usage = {"prompt_tokens": len(key.split()), "completion_tokens": 3}
    finish = "length" if body.get("max_tokens") == 1 else "stop"
    if path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"object": "chat.completion", "choices": [choice], "usage": usage}
    if path.endswith("/completions"):
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return {"object": "text_completion", "choices": [choice], "usage": usage}
    # Embeddings: a vector derived from the text, listed in reverse to check the client reorders by index.
    data = [{"index": i, "embedding": [float(len(t)), float(sum(map(ord, t)))]} for i, t in enumerate(body["input"])]
    return {"object": "list", "data": data[::-1]}


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real servers

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(payload)
            except OSError:
                pass  # the client timed out and left

        def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(data).encode(), headers)

        def _authorized(self) -> bool:
            if server.api_key is None or self.headers.get("Authorization") == f"Bearer {server.api_key}":
                return True
            self._send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
            return False

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]  # a base URL may carry a query (?api-version=, ?api-key=)
            if path == "/stats":
                stats: dict[str, Any] = {"max_open": server.max_open, "mean_open": server.mean_open,
                                         "answered": server.answered, "busy_seconds": server.busy_seconds}
                if self.path.endswith("?bodies=1"):  # what was asked, to replay with another client
                    stats["requests"] = [[r.path, r.body] for r in server.received]
                self._send_json(200, stats)
            elif path != "/v1/models" or not server.has_models:
                self._send_json(404, {"error": {"message": "Not Found"}})
            elif self._authorized():
                entry: dict[str, Any] = {"id": "test-model", "object": "model"}
                if server.max_model_len:
                    entry["max_model_len"] = server.max_model_len
                self._send_json(200, {"object": "list", "data": [entry]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            self.path = self.path.partition("?")[0]
            if self.path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                self._send_json(404, {"error": {"message": "Not Found"}})
                return
            if not self._authorized():
                return
            key = _key(self.path, body)
            fault = server.next_fault(self.path, body, key)
            number = server.arrive()
            if server.latency is not None:
                time.sleep(server.latency(body))
            if fault == "drip":
                self._drip()
                server.leave(number)
            else:
                server.leave(number, hold=fault == "hold")  # counted as answered before the client sees it
                self._reply(key, body, fault)

        def _reply(self, key: str, body: dict, fault: str | None) -> None:
            if fault == "500":
                self._send_json(500, {"error": {"message": "Internal server error", "type": "server_error"}})
            elif fault == "400":
                self._send_json(400, {"error": {"message": "This model's maximum context length is 2048 tokens"}})
            elif fault == "500-secret":
                message = "upstream rejected api_key=sk-live-0123456789abcdef (Authorization: Bearer tok-SECRET-42)"
                self._send_json(500, {"error": {"message": message}})
            elif fault is not None and fault.startswith("429-date:"):
                # Rounded up, so the date is never sooner than N seconds after this request arrived.
                when = math.ceil(time.time() + float(fault.partition(":")[2]))
                self._send_json(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": formatdate(when, usegmt=True)})
            elif fault is not None and fault.startswith("429-ms:"):
                headers = {"Retry-After": "0", "retry-after-ms": fault.partition(":")[2]}
                self._send_json(429, {"error": {"message": "Rate limit reached"}}, headers)
            elif fault is not None and fault.startswith("429"):
                wait = fault.partition(":")[2] or "0"
                self._send_json(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": wait})
            elif fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif fault == "garbage":
                self._send(200, b"<html>upstream hiccup</html>")
            else:
                if fault == "slow":
                    time.sleep(server.slow_seconds)
                self._send_json(200, _answer(self.path, body, key, server.reply(key)))

        def _drip(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                self.close_connection = True  # the client gave up, as it should

    return Handler
