"""The OpenAI-compatible backend against a real local HTTP server that fails on a schedule."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from personahub_core.backends.base import BackendError, Completion, Prompt
from personahub_core.backends.openai_http import OpenAIBackend
from personahub_core.settings import Settings
import openai_client
from fault_server import FaultServer
from openai_client import fast_backoff  # noqa: F401 (an autouse fixture)

# Per prompt index: the faults its first attempts meet (cycled over the batch).
SCHEDULE = [
    [],
    ["500"],
    ["429"],
    ["drop"],
    ["slow"],
    ["garbage"],
    ["500", "drop"],
    ["429", "garbage", "500"],
    [],
    ["drop", "drop"],
]


def make_backend(url: str, **overrides: object) -> OpenAIBackend:
    return openai_client.make_backend(url, **{"request_timeout": 0.5, "max_retries": 3, **overrides})


SAMPLING = {"temperature": 0.8, "top_p": 0.95, "seed": 0}  # what the driver fills in from the run's settings


def chat(text: str, **kw: object) -> Prompt:
    return Prompt(completion=f"Q: {text}\nA:", chat=[{"role": "user", "content": text}], **{**SAMPLING, **kw})


def run(backend: OpenAIBackend, prompts: list[Prompt]) -> dict[int, Completion]:
    results: dict[int, Completion] = {}
    for index, result in backend.generate(prompts):
        assert index not in results, f"index {index} yielded twice"
        results[index] = result
    assert sorted(results) == list(range(len(prompts)))
    return results


@pytest.fixture
def faulty() -> Iterator[FaultServer]:
    faults = {f"p{i}": SCHEDULE[i % len(SCHEDULE)] for i in range(30)}
    with FaultServer(faults) as server:
        yield server


@pytest.mark.parametrize("max_retries", [1, 3])
def test_faulty_batch_yields_every_index_once(faulty: FaultServer, max_retries: int) -> None:
    backend = make_backend(faulty.url, max_retries=max_retries)
    results = run(backend, [chat(f"p{i}") for i in range(30)])
    backend.close()
    for i, result in results.items():
        if len(SCHEDULE[i % len(SCHEDULE)]) <= max_retries:
            assert result.finish_reason == "stop" and result.error is None
            assert result.text == f"echo: p{i}"
            assert result.completion_tokens == 3 and result.prompt_tokens == 1
        else:
            assert result.finish_reason == "error" and result.text == ""
            assert result.error and "\n" not in result.error and f"after {max_retries + 1} attempts" in result.error


def test_persistent_500_becomes_error_results() -> None:
    with FaultServer({f"x{i}": ["500"] * 5 for i in range(4)}) as server:
        backend = make_backend(server.url, max_retries=1)
        results = run(backend, [chat(f"x{i}") for i in range(4)])
    for result in results.values():
        assert result.finish_reason == "error"
        assert result.error.startswith("HTTP 500 after 2 attempts: Internal server error")
    assert server.attempts == {f"x{i}": 2 for i in range(4)}


def test_client_error_is_not_retried() -> None:
    with FaultServer({"too long": ["400"]}) as server:
        results = run(make_backend(server.url), [chat("too long"), chat("fine", max_tokens=1)])
    assert results[0].finish_reason == "error"
    assert results[0].error == "HTTP 400: This model's maximum context length is 2048 tokens"
    assert server.attempts["too long"] == 1
    assert results[1].finish_reason == "length" and results[1].text == "echo: fine"


def test_retry_after_is_honoured() -> None:
    with FaultServer({"wait": ["429:1"]}) as server:
        backend = make_backend(server.url, request_timeout=5)
        results = run(backend, [chat("wait")])
        first, second = server.arrivals("wait")
    assert results[0].text == "echo: wait"
    assert second - first >= 1.0  # the server asked for 1 s; jittered backoff alone would be ~0.01 s


@pytest.mark.parametrize("fault, wait", [("429-date:1", 1.0), ("429-ms:1200", 1.2)])
@pytest.mark.slow
def test_retry_after_as_http_date_or_milliseconds_is_honoured(fault: str, wait: float) -> None:
    with FaultServer({"wait": [fault]}) as server:
        results = run(make_backend(server.url, request_timeout=5), [chat("wait")])
        first, second = server.arrivals("wait")
    assert results[0].text == "echo: wait"
    # The date is rounded up and retry-after-ms wins over its "Retry-After: 0": never sooner than asked.
    assert second - first >= wait


def test_keys_and_tokens_in_server_errors_are_masked() -> None:
    with FaultServer({"leak": ["500-secret"] * 3}) as server:
        results = run(make_backend(server.url, max_retries=1, api_key="sk-live-0123456789abcdef"), [chat("leak")])
    error = results[0].error
    assert error.startswith("HTTP 500 after 2 attempts: upstream rejected api_key=***")
    assert "0123456789abcdef" not in error and "tok-SECRET-42" not in error


def test_credentials_in_the_url_are_never_shown() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(f"http://user:hunter2@127.0.0.1:{port}/v1")
    with pytest.raises(BackendError) as caught:
        list(backend.generate([chat("hello")]))
    assert f"cannot reach http://***@127.0.0.1:{port}/v1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_unreachable_server_is_backend_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(BackendError, match=rf"cannot reach http://127.0.0.1:{port}/v1: .*refused"):
        list(backend.generate([chat("hello")]))


def test_bad_key_is_backend_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultServer(api_key="sekret") as server:
        with pytest.raises(BackendError, match=r"authentication failed \(HTTP 401\)"):
            make_backend(server.url, api_key="wrong").info()
        # The key may also come from the environment.
        monkeypatch.setenv("OPENAI_API_KEY", "sekret")
        assert run(make_backend(server.url), [chat("hi")])[0].text == "echo: hi"


def test_auth_failure_during_generation_is_backend_error() -> None:
    with FaultServer(api_key="sekret", has_models=False) as server:  # no /models: the check cannot see it
        backend = make_backend(server.url, api_key="wrong")
        assert backend.info().name == "test-model"
        with pytest.raises(BackendError, match="authentication failed"):
            list(backend.generate([chat(f"q{i}") for i in range(20)]))


def test_missing_settings_are_backend_errors() -> None:
    with pytest.raises(BackendError, match="--base-url"):
        OpenAIBackend(Settings(backend="openai", model="m"))
    with pytest.raises(BackendError, match="--model"):
        OpenAIBackend(Settings(backend="openai", base_url="http://127.0.0.1:1/v1"))


def test_embeddings_come_back_in_order() -> None:
    texts = [f"t{i}" + "x" * (i % 7) for i in range(150)]  # three batches of up to 64
    with FaultServer({texts[64]: ["500", "drop"]}) as server:
        vectors = make_backend(server.url).embed(texts)
    assert vectors == [[float(len(t)), float(sum(map(ord, t)))] for t in texts]
    assert {r.key: len(r.body["input"]) for r in server.received} == {texts[0]: 64, texts[64]: 64, texts[128]: 22}
    assert server.attempts[texts[64]] == 3


def test_embedding_failure_is_backend_error() -> None:
    with FaultServer({"a": ["500"] * 5}) as server:
        with pytest.raises(BackendError, match="embeddings failed: HTTP 500 after 2 attempts"):
            make_backend(server.url, max_retries=1).embed(["a", "b"])


def test_sampling_and_json_schema_are_forwarded() -> None:
    schema = {"type": "object", "properties": {"problem": {"type": "string"}}, "required": ["problem"]}
    request = chat("json", max_tokens=77, temperature=0.3, top_p=0.9, seed=42, stop=["\n\n"], json_schema=schema)
    with FaultServer() as server:
        run(make_backend(server.url), [request, chat("plain")])
    bodies = {r.key: r.body for r in server.received}
    assert bodies["json"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert {k: bodies["json"][k] for k in ("model", "max_tokens", "temperature", "top_p", "seed", "stop")} == {
        "model": "test-model", "max_tokens": 77, "temperature": 0.3, "top_p": 0.9, "seed": 42, "stop": ["\n\n"],
    }
    assert "response_format" not in bodies["plain"] and "stop" not in bodies["plain"]


def test_completions_endpoint_when_chat_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONAHUB_OPENAI_CHAT", "0")
    with FaultServer() as server:
        backend = make_backend(server.url)
        assert backend.info().has_chat_template is False
        results = run(backend, [chat("few-shot")])
    assert results[0].text == "echo: Q: few-shot\nA:"
    assert [r.path for r in server.received] == ["/v1/completions"]
    assert server.received[0].body["prompt"] == "Q: few-shot\nA:"


def test_chat_by_default_and_prompt_only_requests_use_completions() -> None:
    with FaultServer() as server:
        backend = make_backend(server.url)
        assert backend.info().has_chat_template is True
        run(backend, [chat("c"), Prompt(completion="only a prompt", **SAMPLING)])
    assert sorted(r.path for r in server.received) == ["/v1/chat/completions", "/v1/completions"]


def test_context_length_from_server_or_settings() -> None:
    with FaultServer(max_model_len=32768) as server:
        assert make_backend(server.url).info().context_length == 32768
    with FaultServer(has_models=False) as server:  # a server without /models is fine
        assert make_backend(server.url, n_ctx=2048).info().context_length == 2048
