"""The building blocks a plugin author uses, each through what it does for a small plugin of our own:
an expander, a deduplicator, the prompt helpers and the backend's streaming default."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel, ValidationError

from personahub_core.backends.base import Backend
from personahub_core.backends.fake import FakeBackend
from personahub_core.dedup import DedupOutline, cluster_roots, ragged_arange
from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, few_shot_block, persona_line, reject_near_copies, repeats_itself,
                                       require_problem, synthesis_prompt)
from personahub_core.store import Store
from personahub_core.tasks import (Deduplicator, GenerativeTask, NewPersona, PersonaExpander, Prompt, Rejected, Synthesis,
                                   Synthesizer, Verdict, Verifier, VerifierOptions, WorkItem, work_key)
from personahub_core.testing import PERSONAS, dedup_marks, exported_rows, import_texts, plugins_registered, run_task


class Apprentices(PersonaExpander):
    """Each selected persona gets an apprentice, described by the model."""

    name = "apprentices"

    def work_items(self, ctx):
        for persona in ctx.select_personas():
            yield WorkItem(key=self.item_key(ctx, persona["id"]), input_id=persona["id"],
                           data={"persona": persona["persona"], "parent_id": persona["id"], "hop": persona["hop"] + 1})

    def run_item(self, item):
        completion = yield Prompt(completion=f"{item.data['persona']}\nTheir apprentice:",
                                  chat=[{"role": "user", "content": item.data["persona"]}], max_tokens=32)
        return [NewPersona(completion.text.strip(), relation="student")]


class SameWords(DedupOutline, Deduplicator):
    """Personas made of the same words (in any order or case) are duplicates; the earliest is kept."""

    name = "same-words"
    calls: list[str] = []

    class Options(BaseModel):
        fresh: bool = False

    def forget_own(self, ctx) -> None:
        self.calls.append("forget_own")

    def prepare(self, ctx) -> None:
        self.calls.append("prepare")

    def compare(self, ctx, count, batches) -> None:
        self.calls.append(f"compare {count}")
        table = pa.Table.from_batches(list(batches))
        ids = table["id"].to_pylist()
        first: dict[frozenset, int] = {}
        pairs = [(first.setdefault(frozenset(text.lower().split()), n), n)
                 for n, text in enumerate(table["persona"].to_pylist())]
        i, j = (np.array([p[k] for p in pairs if p[0] != p[1]], dtype=np.int64) for k in (0, 1))
        roots = cluster_roots(i, j)
        self.mark(ctx, ids, [{"persona_id": ids[b], "duplicate_of": ids[roots[b]], "cluster_id": ids[roots[b]],
                              "similarity": 1.0, "reason": "same words"} for b in j.tolist()])


class Shouted(Synthesizer):
    """A synthesizer whose released rows carry their text in capitals (as tools' carry a JSON string)."""

    name = "shouted"

    def prompt(self, persona: str) -> Prompt:
        return Prompt(completion=f"Say something as {persona}:", chat=[], max_tokens=8)

    def parse(self, completion, persona: str) -> Synthesis:
        return Synthesis(completion.text.strip())

    @classmethod
    def released_text(cls, text: str) -> str:
        return text.upper()


class LongEnough(Verifier):
    """Passes a row whose text has at least ``words`` words; asks no model."""

    name = "long-enough"

    class Options(VerifierOptions):
        words: int = 3

    def run_item(self, item: WorkItem):
        count = len(item.data["text"].split())
        return Verdict(passed=count >= self.options.words, score=min(count, 5), fields={"words": count})
        yield  # a generator that asks nothing


class KitPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Apprentices)
        register(SameWords)
        register(Shouted)
        register(LongEnough)


def test_an_expander_makes_new_personas_from_the_selected_ones_once(personas_store):
    FakeBackend.responder = lambda prompt: " A trainee nurse who shadows her on vaccination days."
    with plugins_registered(KitPlugin()):
        first = run_task("apprentices", db=personas_store, backend="fake", where=["persona~pediatric"])
        again = run_task("apprentices", db=personas_store, backend="fake", where=["persona~pediatric"])
    assert (first["personas_added"], again["items_done"], again["items_skipped"]) == (1, 0, 1)  # same keys: no new work
    with Store(personas_store, read_only=True) as store:
        [made] = store.query_dicts("SELECT p.persona, p.origin, p.relation, p.hop, q.persona AS parent FROM personas p "
                                   "JOIN personas q ON q.id = p.parent_id WHERE p.task = 'apprentices'")
    assert made == {"persona": "A trainee nurse who shadows her on vaccination days.", "origin": "expansion",
                    "relation": "student", "hop": 1, "parent": PERSONAS[0]}


def test_item_keys_change_with_the_model_and_the_options_and_not_with_dict_order():
    task = Apprentices()
    model_a, model_b = SimpleNamespace(model_identity=lambda: "fake:a"), SimpleNamespace(model_identity=lambda: "fake:b")
    key = task.item_key(model_a, "p1")  # the model comes from the context the keys are made in
    assert isinstance(task, GenerativeTask) and task.item_key(model_a, "p1") == key
    assert task.item_key(model_b, "p1") != key
    assert work_key({"a": 1, "b": 2}, "x") == work_key({"b": 2, "a": 1}, "x") != work_key({"a": 2, "b": 1}, "x")


def test_a_deduplicator_checks_each_persona_once_and_marks_the_later_copy():
    SameWords.calls = []
    import_texts(["A potter who fires raku bowls", "a POTTER who fires raku Bowls", "A baker who proves rye overnight",
                  "bowls raku fires who potter a"])
    with plugins_registered(KitPlugin()):
        run_task("same-words")
        assert run_task("same-words")["items_done"] == 0  # every persona is checked already
        import_texts(["A baker who proves rye overnight"], name="more.jsonl")
        run_task("same-words")
        run_task("same-words", ["--fresh"])
    assert SameWords.calls == ["prepare", "compare 4", "prepare", "prepare", "compare 1",
                               "forget_own", "prepare", "compare 5"]
    marks = dedup_marks("same-words")
    assert sorted(marks) == ["A baker who proves rye overnight", "a POTTER who fires raku Bowls",
                             "bowls raku fires who potter a"]
    assert {marks[p]["reason"] for p in marks} == {"same words"}


def test_cluster_roots_join_chains_to_their_earliest_member():
    roots = cluster_roots(np.array([0, 2, 5]), np.array([2, 3, 6]))
    assert roots == {0: 0, 2: 0, 3: 0, 5: 5, 6: 5}


def test_ragged_arange_counts_from_zero_in_each_group():
    assert ragged_arange(np.array([2, 0, 3, 1])).tolist() == [0, 1, 0, 1, 2, 0]


DEMOS = [{"persona": "A lighthouse keeper.", "answer": "How many lamps?"}]


def test_synthesis_prompt_builds_both_forms_around_the_demonstrations():
    def render(demo, shown):
        return f"{persona_line(demo, shown)}Question: {demo['answer']}"

    for mode, shown in (("persona-few-shot", True), ("few-shot", False)):
        examples = few_shot_block(DEMOS, SynthesisOptions(mode=mode).mode, render)
        prompt = synthesis_prompt(header="Questions people ask.", examples=examples, context="A small island.",
                                  query=f"Persona: {PERSONAS[3]}\nQuestion:", request=f"Ask as {PERSONAS[3]}.",
                                  max_tokens=40)
        assert prompt.completion.startswith("A small island.\n\n---\n\nQuestions people ask.\n\n")
        assert prompt.completion.endswith(f"Question: How many lamps?\n\nPersona: {PERSONAS[3]}\nQuestion:")
        assert ("Persona: A lighthouse keeper." in prompt.completion) is shown
        assert prompt.chat[0]["content"].endswith(f"Question: How many lamps?\n\nAsk as {PERSONAS[3]}.")
        assert prompt.max_tokens == 40
    with pytest.raises(ValidationError):
        SynthesisOptions(mode="two-shot")


def test_answer_checks_catch_loops_and_stories():
    assert repeats_itself("The hive is quiet today. Bees rest. The hive is quiet today.")
    assert repeats_itself(" ".join(["honey bees"] * 30))
    assert not repeats_itself("A beekeeper has 12 hives. Each gives 18 kg of honey. How much honey is that?")
    require_problem("A beekeeper has 12 hives. How much honey do they give?")
    require_problem("Find the total weight of the honey.")
    with pytest.raises(Rejected, match="asks no question"):
        require_problem("Once upon a time a beekeeper lived by the sea.")
    with pytest.raises(Rejected, match="asks no question"):
        require_problem("A heavy metal musician who lives in a remote area of the United States.")


class Batches(FakeBackend):
    """The fake backend with the base class's default stream (fill, wait, refill), noting how many
    prompts each call to generate gets."""

    stream = Backend.stream

    def __init__(self):
        super().__init__()
        self.sizes: list[int] = []

    def generate(self, prompts):
        self.sizes.append(len(prompts))
        yield from super().generate(prompts)


def test_the_default_stream_keeps_at_most_slots_in_flight_and_takes_follow_up_prompts():
    FakeBackend.responder = lambda prompt: prompt.completion.upper()
    queue = [(n, Prompt(completion=f"p{n}", chat=[], max_tokens=4)) for n in range(5)]
    backend, answers = Batches(), {}
    for ticket, completion in backend.stream(lambda: queue.pop(0) if queue else None, slots=2):
        answers[ticket] = completion.text
        if ticket == 4:  # the next step of an item arrives after its completion
            queue.append(("4b", Prompt(completion="step two", chat=[], max_tokens=4)))
    assert answers == {0: "P0", 1: "P1", 2: "P2", 3: "P3", 4: "P4", "4b": "STEP TWO"}
    assert backend.sizes == [2, 2, 1, 1]


def test_a_verifier_judges_each_row_once_and_export_keeps_what_passed(personas_store):
    answers = iter(["two words", "a much longer answer here"] * 3)
    FakeBackend.responder = lambda prompt: next(answers)
    with plugins_registered(KitPlugin()):
        run_task("shouted", db=personas_store, backend="fake", limit=2)
        first = run_task("long-enough", ["--task", "shouted"], db=personas_store, backend="fake")
        again = run_task("long-enough", ["--task", "shouted"], db=personas_store, backend="fake")
        kept = exported_rows(personas_store, "shouted", verified=True)
        everything = exported_rows(personas_store, "shouted")
    assert (first["items_done"], again["items_done"], again["items_skipped"]) == (2, 0, 2)
    # released_text: every export writes the text as the task's release does
    assert sorted(r["synthesized text"] for r in everything) == ["A MUCH LONGER ANSWER HERE", "TWO WORDS"]
    assert [r["synthesized text"] for r in kept] == ["A MUCH LONGER ANSWER HERE"]


def test_a_near_copy_of_a_demonstration_is_rejected_and_a_new_problem_is_not():
    demo = "A baker sells 24 loaves each morning and 15 each evening. How many loaves does she sell in a week?"
    with pytest.raises(Rejected, match="near-copy"):
        reject_near_copies(demo.replace("24", "30").replace("baker", "cook"), [demo])
    reject_near_copies("A ferry crosses a 3 km strait at 12 km/h against a 2 km/h current. How long does it take?", [demo])
