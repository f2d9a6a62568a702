"""Persona-to-Persona with the fake backend: hops, parents and relations recorded, the budget kept, and
its own demonstrations in the prompt."""

from __future__ import annotations

from personahub_core.prompting import demonstrations
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task


def answer_by_prompt(req):
    """Distinct, valid persona answers so provenance can be followed."""
    tail = req.completion[-120:].replace("\n", " ")
    return f" person who cares about {abs(hash(tail)) % 10_000} things in their community."


def test_persona_to_persona_hops_parents_relations_and_budget(personas_file):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = answer_by_prompt
    summary = run_task("persona-to-persona", ["--hops", "2", "--relations", "colleague,mentor"], backend="fake")
    assert summary["personas_added"] == 12  # 6 at hop 1, then one from each of those at hop 2
    with Store("personahub.duckdb", read_only=True) as store:
        rows = store.query_dicts("SELECT p.hop, p.relation, p.parent_id, parent.hop AS parent_hop FROM personas p "
                                 "JOIN personas parent ON parent.id = p.parent_id WHERE p.origin = 'expansion'")
    assert sorted(r["hop"] for r in rows) == [1] * 6 + [2] * 6
    assert all(r["parent_hop"] == r["hop"] - 1 and r["relation"] in ("colleague", "mentor") for r in rows)
    budget = run_task("persona-to-persona", ["--hops", "4", "--relations", "colleague,mentor", "--max-personas", "3"],
                      backend="fake")
    assert budget["personas_added"] == 3



def test_its_demonstrations_ship_in_its_package_and_reach_the_prompt(personas_file):
    demos = demonstrations("personahub_persona_to_persona")
    assert len(demos) >= 3 and all({"persona", "relation", "related_persona"} <= set(d) for d in demos)
    run_task("import", ["--input", str(personas_file)], limit=1)
    FakeBackend.responder = answer_by_prompt
    run_task("persona-to-persona", ["--hops", "1", "--relations", "mentor"], backend="fake")
    assert all(d["related_persona"] in FakeBackend.calls[0].completion for d in demos)
