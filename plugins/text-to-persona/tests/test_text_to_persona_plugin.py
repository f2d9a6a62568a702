"""Text-to-Persona with the fake backend: provenance (source text, perspective), its own demonstrations
in the prompt, long texts cut, non-personas rejected, and the main job's bootstrap step it declares."""

from __future__ import annotations

import json

from personahub_core.plugins import get_registry
from personahub_core.prompting import demonstrations
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, cli, run_task, write_jsonl

TEXTS = [
    "The county library reopens on Monday after flood repairs; the children's corner has new shelving.",
    "Release 2.4 adds async connection pooling and drops support for the old config format.",
    "Whisk the eggs with sugar until pale, fold in the flour, and bake for twenty minutes.",
]


def answer_by_prompt(req):
    """Distinct, valid persona answers so provenance can be followed."""
    tail = req.completion[-120:].replace("\n", " ")
    return f" person who cares about {abs(hash(tail)) % 10_000} things in their community."


def test_text_to_persona_records_source_and_perspective_and_rerun_does_nothing(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)])
    run_task_ingest = cli("ingest", tmp_path / "c.jsonl", check=True)
    assert run_task_ingest.returncode == 0
    FakeBackend.responder = answer_by_prompt
    first = run_task("text-to-persona", backend="fake")
    assert first["items_done"] == 6 and first["personas_added"] == 6
    again = run_task("text-to-persona", backend="fake")
    assert again["items_done"] == 0 and again["items_skipped"] == 6
    with Store("personahub.duckdb", read_only=True) as store:
        rows = store.query_dicts("SELECT d.source_id, perspective, origin, hop, persona FROM personas p "
                                 "JOIN documents d ON d.id = p.source_id ORDER BY p.seq")
    assert {(r["source_id"], r["perspective"]) for r in rows} == {(f"d{i}", p) for i in range(3) for p in ("read", "write")}
    assert all(r["origin"] == "text" and r["hop"] == 0 and r["persona"].startswith("A person") for r in rows)


def test_text_to_persona_prompt_has_demonstrations_and_truncates_long_texts(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": "word " * 2000}])
    cli("ingest", tmp_path / "c.jsonl", check=True)
    FakeBackend.responder = answer_by_prompt
    run_task("text-to-persona", ["--perspectives", "like", "--max-chars", "300"], backend="fake")
    (call,) = FakeBackend.calls
    assert call.completion.count("Text: ") >= 3 and "Who is likely to like this text? A" in call.completion
    assert len(call.completion.split("Text: ")[-1]) < 500
    with Store("personahub.duckdb", read_only=True) as store:
        assert "truncated from 9999 to 300" in store.scalar("SELECT note FROM personas")


def test_text_to_persona_rejects_non_personas_with_reason(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"text": TEXTS[0]}])
    cli("ingest", tmp_path / "c.jsonl", check=True)
    FakeBackend.responder = lambda req: "?"
    summary = run_task("text-to-persona", ["--perspectives", "read"], backend="fake")
    assert summary["items_rejected"] == 1 and summary["personas_added"] == 0
    with Store("personahub.duckdb", read_only=True) as store:
        row = store.query_dicts("SELECT status, error, raw_output FROM generations")[0]
    assert row["status"] == "rejected" and "too short" in row["error"] and json.loads(row["raw_output"]) == ["?", "?"]



def test_its_demonstrations_ship_in_its_package_and_reach_the_prompt(tmp_path):
    demos = demonstrations("personahub_text_to_persona")
    assert len(demos) >= 3 and all({"text", "perspective", "persona"} <= set(d) for d in demos)
    write_jsonl(tmp_path / "c.jsonl", [{"text": TEXTS[1]}])
    cli("ingest", tmp_path / "c.jsonl", check=True)
    FakeBackend.responder = answer_by_prompt
    run_task("text-to-persona", ["--perspectives", "read"], backend="fake")
    assert all(d["persona"] in FakeBackend.calls[0].completion for d in demos)


def test_it_declares_the_first_bootstrap_step_with_one_perspective():
    cls = get_registry().tasks["text-to-persona"]
    assert cls.bootstrap_step == 1 and cls.Options(**cls.bootstrap_options).perspectives == ["write"]
