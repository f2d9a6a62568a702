"""The streaming driver: exactly ``batch_size`` calls in flight while work remains, a freed slot refilled at
once (by an item's next step first), items read from their iterable only as slots free, and one slow call
never holding the others back. Backends here implement only ``stream``: a driver that batched would fail."""

from __future__ import annotations

from personahub_core.backends.base import Backend, Completion, ModelInfo, Prompt
from personahub_core.backends.factory import CachingBackend
from personahub_core.driving import drive
from personahub_core.hookspecs import hookimpl
from personahub_core.settings import Settings
from personahub_core.tasks import GenerativeTask, Rejected, WorkItem
from personahub_core.testing import PERSONAS, FakeBackend, plugins_registered, run_task, temporary_store


class Scripted(Backend):
    """Keeps up to ``slots`` calls in flight and finishes the earliest admitted one, except that a call
    whose prompt contains ``held`` finishes only when nothing else is in flight. Records what it saw."""

    name = "scripted"
    last: "Scripted | None" = None

    def __init__(self, settings=None, held: str | None = None):
        self.held = held
        self.fed: list[str] = []  # prompts, in the order the driver gave them
        self.in_flight: list[int] = []  # calls in flight each time one finishes
        Scripted.last = self

    def info(self) -> ModelInfo:
        return ModelInfo(name="scripted", context_length=4096, has_chat_template=False)

    def generate(self, prompts):
        raise AssertionError("the driver must stream, not hand over batches")

    def stream(self, feed, slots):
        flying: list[tuple[object, Prompt]] = []
        while True:
            while len(flying) < slots and (fed := feed()) is not None:
                flying.append(fed)
                self.fed.append(fed[1].completion)
            if not flying:
                return
            self.in_flight.append(len(flying))
            ready = [f for f in flying if self.held is None or self.held not in f[1].completion] or flying
            ticket, prompt = ready[0]
            flying.remove((ticket, prompt))
            yield ticket, Completion(f"answer to {prompt.completion}", prompt_tokens=1, completion_tokens=1)


class Steps(GenerativeTask):
    """Each item asks ``steps`` questions in turn; an item named 'picky' rejects its first attempt."""

    name = "steps"

    def __init__(self, steps: int = 1):
        super().__init__()
        self.steps = steps

    def run_item(self, item):
        answers = []
        for step in range(self.steps):
            completion = yield Prompt(completion=f"{item.key} step {step}", max_tokens=8)
            answers.append(completion.text)
        if item.key == "picky" and answers[0].endswith("#1"):
            raise Rejected("first attempt")
        return answers


def items(keys, taken=None, done=None):
    """Work items, noting how many outcomes had come out when each item was taken."""
    for key in keys:
        if taken is not None:
            taken.append(len(done))
        yield WorkItem(key=key, input_id=None, data={})


def test_exactly_batch_size_calls_are_in_flight_while_work_remains():
    backend, done, taken = Scripted(), [], []
    keys = [f"item{i:02d}" for i in range(20)]
    for outcome in drive(Steps(), items(keys, taken, done), backend, Settings(batch_size=4)):
        done.append(outcome)
    assert [o.status for o in done] == ["ok"] * 20
    # Full until the items run out, then draining: never a refill that waits for the rest of a batch.
    assert backend.in_flight == [4] * 17 + [3, 2, 1]
    # Items are read as slots free, never ahead: when an item is taken, fewer than 4 are in flight.
    assert all(i - finished < 4 for i, finished in enumerate(taken))


def test_an_items_next_step_takes_the_freed_slot_before_a_new_item():
    backend = Scripted()
    outcomes = list(drive(Steps(steps=2), items(["a", "b", "c", "d"]), backend, Settings(batch_size=2)))
    assert backend.fed == ["a step 0", "b step 0", "a step 1", "b step 1",
                           "c step 0", "d step 0", "c step 1", "d step 1"]
    assert [o.item.key for o in outcomes] == ["a", "b", "c", "d"]
    assert outcomes[0].result == ["answer to a step 0", "answer to a step 1"]
    assert backend.in_flight == [2] * 7 + [1]


def test_a_held_back_call_does_not_stop_the_others_being_fed():
    backend = Scripted(held="slow")
    keys = ["slow"] + [f"item{i:02d}" for i in range(12)]
    outcomes = list(drive(Steps(), items(keys), backend, Settings(batch_size=3)))
    # The slow call sat in one slot while all twelve others went through the other two.
    assert [o.item.key for o in outcomes] == keys[1:] + ["slow"]
    assert backend.in_flight == [3] * 11 + [2, 1]


def test_seeds_follow_item_step_and_attempt_not_the_order_of_calls():
    """A rejected attempt starts again with a fresh seed; each call's seed is the one the windowed
    driver gave it, whatever else is in flight (stored keys and rows depend on it)."""
    def seeds(batch_size, latency):
        FakeBackend.calls.clear()
        FakeBackend.latency = latency
        FakeBackend.responder = lambda p: f"#{sum(c.completion == p.completion for c in FakeBackend.calls)}"
        keys = ["picky", "a", "b", "c"]
        outcomes = {o.item.key: o for o in drive(Steps(steps=2), items(keys), FakeBackend(), Settings(batch_size=batch_size))}
        assert outcomes["picky"].raw_outputs == ["#1", "#1", "#2", "#2"]  # two attempts of two steps
        return sorted((c.completion, c.seed) for c in FakeBackend.calls)

    one_at_a_time = seeds(1, None)
    assert seeds(3, lambda p: 5 if p.completion.startswith("a") else 1) == one_at_a_time
    picky = [seed for prompt, seed in one_at_a_time if prompt == "picky step 0"]
    assert len(set(picky)) == 2


def test_the_cache_answers_hits_at_once_and_streams_only_misses(tmp_path):
    with temporary_store(tmp_path) as store:
        prompts = [Prompt(completion=f"question {i}", max_tokens=8, seed=1) for i in range(10)]
        def stream_all(cache, prompts):
            queue = list(enumerate(prompts))
            return dict(cache.stream(lambda: queue.pop(0) if queue else None, 2))

        warm = CachingBackend(Scripted(), store)
        stream_all(warm, prompts[:5])
        warm.flush()
        inner = Scripted()
        answers = stream_all(CachingBackend(inner, store), prompts)
    assert sorted(answers) == list(range(10))
    assert [answers[i].cached for i in range(10)] == [True] * 5 + [False] * 5
    assert inner.fed == [p.completion for p in prompts[5:]]  # the misses only, and each once
    assert inner.in_flight == [2, 2, 2, 2, 1]


class StepsPlugin:
    @hookimpl
    def register_backends(self, register):
        register(Scripted)


def test_a_run_keeps_batch_size_calls_in_flight_through_the_cache_and_writer(personas_file):
    with plugins_registered(StepsPlugin()):
        run_task("import", ["--input", str(personas_file)])
        summary = run_task("math", backend="scripted", batch_size=2)
    assert summary["items_done"] + summary["items_failed"] == len(PERSONAS)  # failed counts the rejected
    calls = Scripted.last.in_flight  # a rejected answer's retry is one more call
    assert len(calls) >= len(PERSONAS) and calls == [2] * (len(calls) - 1) + [1]
