"""The OpenAI-compatible backend's stream against a real local server: slots refilled at once, exactly N
in flight, a deadline for the whole request, concurrency that backs off and recovers, and the pacing and
URL masking behind them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque

import pytest

from personahub_core.backends.base import Backend, Completion, Prompt
from personahub_core.backends.openai_http import OpenAIBackend
from personahub_core.backends.pacing import Concurrency, Pacing
from personahub_core.settings import Settings, public_values, redact, redact_url
import openai_client
from fault_server import FaultServer
from openai_client import fast_backoff  # noqa: F401 (an autouse fixture)

SAMPLING = {"temperature": 0.8, "top_p": 0.95, "seed": 0}


def make_backend(url: str, **overrides: object) -> OpenAIBackend:
    return openai_client.make_backend(url, **{"request_timeout": 30, "max_retries": 0, **overrides})


def chat(text: str) -> Prompt:
    return Prompt(completion=f"Q: {text}\nA:", chat=[{"role": "user", "content": text}], **SAMPLING)


def streamed(backend: OpenAIBackend, keys: list[str], slots: int = 8) -> list[tuple[str, Completion]]:
    feed = iter((key, chat(key)) for key in keys)
    return list(backend.stream(lambda: next(feed, None), slots))


def test_stream_finishes_while_one_answer_is_held_back_until_all_others_are_answered() -> None:
    keys = [f"p{i}" for i in range(40)]
    with FaultServer({"p0": ["hold"]}, total=len(keys)) as server:
        backend = make_backend(server.url)
        results = streamed(backend, keys)
        backend.close()
    assert sorted(key for key, _ in results) == sorted(keys)
    assert all(c.text == f"echo: {key}" for key, c in results)
    assert server.attempts["p0"] == 1  # answered, not timed out and retried


def test_a_windowed_stream_cannot_get_past_a_held_back_answer() -> None:
    # The base class's stream (fill, wait for all, refill) never sends the requests p0 waits on.
    keys = [f"p{i}" for i in range(12)]
    with FaultServer({"p0": ["hold"]}, total=len(keys)) as server:
        backend = make_backend(server.url, request_timeout=1)
        feed = iter((key, chat(key)) for key in keys)
        results = dict(Backend.stream(backend, lambda: next(feed, None), 8))
        backend.close()
    assert results["p0"].error == "timed out (1 s)"


@pytest.mark.slow
def test_stream_keeps_exactly_n_in_flight_while_work_remains() -> None:
    # The server answers one request at a time, and only while min(8, requests left) are open.
    keys = [f"p{i}" for i in range(60)]
    with FaultServer(total=len(keys), lockstep=8) as server:
        backend = make_backend(server.url)
        results = streamed(backend, keys)
        backend.close()
    assert len(results) == 60 and all(c.error is None for _, c in results)
    assert server.seen_open == [min(8, 60 - i) for i in range(60)]
    assert server.max_open == 8


def test_a_later_step_fed_after_its_first_is_sent_and_the_stream_ends_when_all_are_done() -> None:
    # As a driver does with multi-step items: feed gives None while steps are out, then their next steps.
    new = deque(f"item{i}" for i in range(20))
    follow_ups: deque[str] = deque()

    def feed() -> tuple[str, Prompt] | None:
        key = follow_ups.popleft() if follow_ups else new.popleft() if new else None
        return None if key is None else (key, chat(key))

    with FaultServer() as server:
        backend = make_backend(server.url)
        done = []
        for key, completion in backend.stream(feed, 4):
            done.append(key)
            if not key.endswith("/2"):
                follow_ups.append(f"{key}/2")
        backend.close()
    assert sorted(done) == sorted([f"item{i}" for i in range(20)] + [f"item{i}/2" for i in range(20)])


@pytest.mark.slow
def test_a_slow_drip_is_cut_by_the_whole_request_deadline() -> None:
    # The server sends a byte every 0.2 s, forever: a per-read timeout of 1 s would never fire.
    with FaultServer({"drip": ["drip", "drip"]}) as server:
        backend = make_backend(server.url, request_timeout=1, max_retries=1)
        results = dict(streamed(backend, ["drip", "fine"]))
        backend.close()
    assert results["drip"].error == "timed out (1 s) after 2 attempts"
    assert results["fine"].text == "echo: fine"


def test_429_halves_the_requests_in_flight_and_they_grow_back() -> None:
    notes: list[str] = []
    with FaultServer({"p0": ["429:0"]}) as server:
        backend = make_backend(server.url, max_retries=2)
        backend.on_note = notes.append
        results = streamed(backend, [f"p{i}" for i in range(200)])
        lowest, limit, lowered = backend.concurrency.lowest, backend.concurrency.limit, backend.concurrency.lowered
        backend.close()
    assert all(c.error is None for _, c in results)
    # 8 -> 4 at the 429, then one more after each round of answers: 4 + 5 + 6 + 7 of them back to 8.
    assert (lowest, limit, lowered) == (4, 8, {"HTTP 429": 1})
    assert notes == ["openai: requests in flight: up to 8 (--batch-size 8); lowered once (HTTP 429), down to 4, 8 at the end"]


def test_concurrency_halves_once_per_round_and_adds_one_per_round_of_answers() -> None:
    concurrency = Concurrency(16)
    epoch = concurrency.epoch
    concurrency.lower(epoch, "HTTP 429")
    concurrency.lower(epoch, "HTTP 429")  # sent before the first cut: no second cut
    assert concurrency.limit == 8
    concurrency.lower(concurrency.epoch, "HTTP 503")
    assert (concurrency.limit, concurrency.lowest) == (4, 4)
    for _ in range(4 + 5):
        concurrency.answered()
    assert concurrency.limit == 6
    concurrency.allow(5)  # a stream with fewer slots
    assert (concurrency.ceiling, concurrency.limit) == (5, 5)
    for _ in range(100):
        concurrency.answered()
    assert concurrency.limit == 5
    assert concurrency.lowered == {"HTTP 429": 1, "HTTP 503": 1}


def test_pacing_waits_out_a_retry_after_and_spreads_requests_under_per_minute_limits() -> None:
    async def starts(pacing: Pacing, n: int, tokens: int = 0) -> list[float]:
        times = []
        for _ in range(n):
            await pacing.wait(tokens)
            times.append(time.monotonic())
        return times

    paused = Pacing()
    begin = time.monotonic()
    paused.pause(0.3)
    assert asyncio.run(starts(paused, 1))[0] - begin >= 0.3
    by_requests = asyncio.run(starts(Pacing(requests_per_minute=600), 4))  # one per 0.1 s
    assert by_requests[-1] - by_requests[0] >= 0.3
    by_tokens = asyncio.run(starts(Pacing(tokens_per_minute=6000), 3, tokens=10))  # 10 tokens per 0.1 s
    assert by_tokens[-1] - by_tokens[0] >= 0.2


def test_rate_limit_flags_reach_the_backend_options(tmp_path) -> None:
    from personahub_core.testing import cli

    result = cli("run", "--plugin", "math", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                 "--model", "m", "--max-requests-per-minute", "0", "--dry-run")
    assert (result.returncode, result.stderr.strip()) == (
        2, "error: flag: --max-requests-per-minute: Input should be greater than or equal to 1 (got '0')")
    backend = OpenAIBackend(Settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m",
                                     max_requests_per_minute=60, max_tokens_per_minute=1000))
    assert (backend.pacing.requests_per_minute, backend.pacing.tokens_per_minute) == (60, 1000)


@pytest.mark.parametrize("url, shown", [
    ("http://user:p@ss-hunter2@10.0.0.1:8000/v1", "http://***@10.0.0.1:8000/v1"),
    ("https://h.example/v1?api-key=hunter2&api-version=2024", "https://h.example/v1?api-key=***&api-version=2024"),
    ("https://h.example/v1?key=hunter2", "https://h.example/v1?key=***"),
    ("https://h.example/v1?x=1&token=hunter2", "https://h.example/v1?x=1&token=***"),
    ("https://h.example/v1?monkey=banana", "https://h.example/v1?monkey=banana"),
])
def test_passwords_with_at_and_keys_in_the_query_are_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"cannot reach {url} (refused)") == f"cannot reach {shown} (refused)"
    assert public_values({"base_url": url})["base_url"] == shown


def test_a_base_urls_query_is_kept_and_a_password_does_not_drop_the_bearer_key() -> None:
    with FaultServer(api_key="sk-right-123456") as server:
        url = server.url.replace("http://", "http://user:p@ss@") + "?api-version=1"
        backend = make_backend(url, api_key="sk-right-123456")
        results = streamed(backend, ["hello"])
        backend.close()
    assert results == [("hello", Completion(text="echo: hello", prompt_tokens=1, completion_tokens=3))]
    assert backend.public_url.startswith("http://***@127.0.0.1")


@pytest.mark.slow
def test_runs_show_the_requests_kept_in_flight_and_why_they_were_lowered(personas_file) -> None:
    from personahub_core.testing import cli

    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    with FaultServer(every=["429:0"]) as server:  # the echoed answers are no math problems: items rejected
        cli("run", "--plugin", "math", "--backend", "openai", "--base-url", server.url, "--model", "test-model",
            "--batch-size", "4", "--limit", "6", "-q")
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert runs[0]["task"] == "math"
    note = next(n for n in runs[0]["notes"] if n.startswith("openai: requests in flight"))
    # How many were in flight before the first 429 came back depends on timing; that it was lowered does not.
    assert re.match(r"openai: requests in flight: up to [1-4] \(--batch-size 4\); lowered", note), note
    assert "HTTP 429" in note
