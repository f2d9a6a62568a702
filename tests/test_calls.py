"""The one vocabulary of a model call (Prompt, Completion): how the driver fills in a prompt's sampling,
and the keys stores in the wild hold, which must not change for the same prompt."""

from __future__ import annotations

from dataclasses import replace

from personahub_core.backends.base import ModelInfo, Prompt
from personahub_core.backends.factory import CachingBackend
from personahub_core.driving import sampled
from personahub_core.runner import prompt_hash
from personahub_core.settings import Settings
from personahub_core.store import Store
from personahub_core.testing import PERSONAS, FakeBackend, run_task, temporary_store, write_jsonl

PROMPT = Prompt(completion="Persona: a baker\nProblem:", chat=[{"role": "user", "content": "a baker"}],
                max_tokens=64, temperature=0.7, top_p=0.9, seed=42, stop=["\n\n"], json_schema={"type": "object"})


class TinyFake(FakeBackend):
    """The fake backend posing as a model file that may have a chat template (the key names both)."""

    def __init__(self, chat: bool):
        super().__init__()
        self.chat = chat

    def info(self) -> ModelInfo:
        return ModelInfo(name="tiny.gguf", context_length=2048, has_chat_template=self.chat)


def test_the_driver_fills_in_what_the_task_left_open():
    settings = Settings(temperature=0.6, top_p=0.8, max_tokens=None)
    open_prompt = Prompt(completion="Q:", max_tokens=32, stop=["\n"])
    assert sampled(open_prompt, settings, seed=7).sampling() == {
        "max_tokens": 32, "temperature": 0.6, "top_p": 0.8, "seed": 7, "stop": ["\n"]}
    # What the task set wins over the run's settings; --max-tokens overrides every task's budget.
    assert sampled(PROMPT, settings, seed=7).sampling() == {
        "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": 42, "stop": ["\n\n"]}
    assert sampled(open_prompt, Settings(max_tokens=5), seed=7).max_tokens == 5
    assert open_prompt.temperature is None and open_prompt.seed is None  # the task's prompt is left as it was


def test_cache_keys_are_those_stores_already_hold(tmp_path):
    """Literals recorded before Prompt replaced GenerationRequest: existing caches must still hit."""
    with temporary_store(tmp_path) as store:
        keys = {chat: CachingBackend(TinyFake(chat), store)._key(PROMPT) for chat in (False, True)}
        assert keys == {False: "e062949bc3c2585fffaa4c60", True: "1c44cae2df3c88c4179da1be"}
        # Only the form actually sent is in the key.
        cache = CachingBackend(TinyFake(False), store)
        assert cache._key(replace(PROMPT, chat=None)) == keys[False]
        first = dict(cache.generate([PROMPT]))[0]
        cache.flush()
        again = dict(cache.generate([PROMPT]))[0]
        assert (first.cached, again.cached) == (False, True)
        assert replace(again, cached=False) == first
    assert prompt_hash([{"prompt": PROMPT.completion, "messages": PROMPT.chat},
                        {"prompt": "x", "messages": None}]) == "689409946d2631eeedf22c53"


def test_a_run_stores_the_keys_it_stored_before(tmp_path):
    """A math row and its cache entry, through the whole path (task, driver, cache, writer), as recorded
    before the change: a rerun over an old store resumes instead of redoing the work."""
    write_jsonl(tmp_path / "p.jsonl", [{"persona": PERSONAS[0]}])
    run_task("import", ["--input", "p.jsonl"])
    run_task("math", [], backend="fake", cache=True)
    with Store("personahub.duckdb", read_only=True) as store:
        row = store.query_dicts("SELECT key, prompt_hash, sampling FROM generations")[0]
        cached = store.query_dicts("SELECT key FROM llm_cache")
    assert (row["key"], row["prompt_hash"]) == ("5971e3ee5e808d0a2554ca19", "73a97822153b8cf2ea8094a4")
    assert cached == [{"key": "e6be7fbc3552993f745f5c64"}]
    assert "179261156" in str(row["sampling"])
