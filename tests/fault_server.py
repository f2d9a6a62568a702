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
from typing import Any


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
    ) -> None:
        self.faults = faults or {}
        self.every = every or []  # the faults of every key not in ``faults``
        self.api_key = api_key
        self.has_models = has_models
        self.max_model_len = max_model_len
        self.slow_seconds = slow_seconds
        self.received: list[Received] = []
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()
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


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out or give up reset their connections; that is expected here


def _key(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        return str(body["messages"][-1]["content"])
    if path.endswith("/completions"):
        return str(body["prompt"])
    return str(body["input"][0])


def _answer(path: str, body: dict, key: str) -> dict[str, Any]:
    usage = {"prompt_tokens": len(key.split()), "completion_tokens": 3}
    finish = "length" if body.get("max_tokens") == 1 else "stop"
    if path.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": f"echo: {key}"}, "finish_reason": finish}
        return {"object": "chat.completion", "choices": [choice], "usage": usage}
    if path.endswith("/completions"):
        choice = {"index": 0, "text": f"echo: {key}", "finish_reason": finish}
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
            if self.path != "/v1/models" or not server.has_models:
                self._send_json(404, {"error": {"message": "Not Found"}})
            elif self._authorized():
                entry: dict[str, Any] = {"id": "test-model", "object": "model"}
                if server.max_model_len:
                    entry["max_model_len"] = server.max_model_len
                self._send_json(200, {"object": "list", "data": [entry]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                self._send_json(404, {"error": {"message": "Not Found"}})
                return
            if not self._authorized():
                return
            key = _key(self.path, body)
            fault = server.next_fault(self.path, body, key)
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
                self._send_json(200, _answer(self.path, body, key))

    return Handler
