"""The data path: columnar writes keep their semantics, and rows rebuild the prompts they no longer store."""

from __future__ import annotations

import pytest

import json

from personahub_core.export import persona_details
from personahub_core.plugins import get_registry
from personahub_core.replay import rebuild
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task
from personahub_math import MathProblems

from personahub_core.testing import PERSONAS, cli, last_json

PROBLEM = "A baker sells 12 loaves at 3 euros each and 5 rolls at 1 euro each. How much does she take in?"
SOLUTION = "12 times 3 is 36 and 5 times 1 is 5, so 41.\nFinal answer: 41 euros"


def generations(where: str = "TRUE") -> list[dict]:
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query_dicts(f"SELECT * FROM generations WHERE {where} ORDER BY key")


def test_rows_keep_no_prompt_yet_every_step_and_retry_is_rebuilt_exactly(personas_file):
    run_task("import", ["--input", str(personas_file)])
    tries: dict[str, int] = {}

    def answer(req):  # the first problem for each persona is unusable, so every item restarts once
        if req.completion.rstrip().endswith("Solution:"):
            return SOLUTION
        persona = next(p for p in PERSONAS if p in req.completion)
        tries[persona] = tries.get(persona, 0) + 1
        return "Too short." if tries[persona] == 1 else PROBLEM

    FakeBackend.responder = answer
    summary = run_task("math", ["--with-solution"], backend="fake")
    assert summary["items_done"] == len(PERSONAS)
    sent: dict[str, list[str]] = {}
    for req in FakeBackend.calls:
        persona = next((p for p in PERSONAS if p in req.completion), None)
        sent.setdefault(persona, []).append(req.completion)
    for row in generations():
        assert row["prompt"] is None and row["prompt_hash"]
        prompts, check = rebuild(row, get_registry().tasks)
        assert check == "ok"
        persona = json.loads(row["item_data"])["input"]["persona"]
        # problem (rejected), problem again, then the solving step: as the backend received them
        assert [p["prompt"] for p in prompts][:2] == sent[persona]
        assert len(prompts) == 3 and prompts[2]["prompt"].rstrip().endswith("Solution:")


def test_a_template_changed_without_a_version_bump_is_reported(personas_file, monkeypatch):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = lambda req: PROBLEM
    run_task("math", backend="fake")
    with Store("personahub.duckdb", read_only=True) as store:
        persona_id = store.scalar("SELECT id FROM personas ORDER BY seq LIMIT 1")
        assert persona_details(store, persona_id, get_registry().tasks)["generations"][0]["prompt_check"] == "ok"
        original = MathProblems.prompt

        def edited(self, persona):
            prompt = original(self, persona)
            prompt.completion = prompt.completion.replace("Each persona", "Every persona")
            return prompt

        monkeypatch.setattr(MathProblems, "prompt", edited)
        shown = persona_details(store, persona_id, get_registry().tasks)["generations"][0]
    assert shown["prompt_check"].startswith("mismatch") and "version bump" in shown["prompt_check"]
    assert "Every persona" in shown["prompts"][0]["prompt"]


@pytest.mark.slow
def test_personas_show_and_export_full_give_the_rebuilt_prompts(tmp_path, personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    cli("run", "--plugin", "math", "--backend", "fake", "-q", env={"PERSONAHUB_FAKE_ANSWER": PROBLEM}, check=True)
    with Store("personahub.duckdb", read_only=True) as store:
        persona_id, persona = store.query("SELECT id, persona FROM personas ORDER BY seq LIMIT 1")[0]
    shown = json.loads(cli("personas", "show", persona_id, check=True).stdout)
    (made,) = [g for g in shown["generations"] if g["task"] == "math"]
    assert made["prompt_check"] == "ok" and persona in made["prompts"][0]["prompt"]
    for fmt in ("jsonl", "csv"):
        cli("export", "math", "--format", fmt, "--full", "--out", tmp_path / f"m.{fmt}", check=True)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == len(PERSONAS) and all(r["prompt_check"] == "ok" for r in rows)
    assert all(r["input persona"] in r["prompt"][0]["prompt"] for r in rows)
    assert "prompt_check" in (tmp_path / "m.csv").read_text().splitlines()[0]
    plain = cli("export", "math", "--format", "jsonl", "--out", tmp_path / "plain.jsonl", check=True)
    assert plain.returncode == 0
    assert set(json.loads((tmp_path / "plain.jsonl").read_text().splitlines()[0])) == {
        "input persona", "synthesized text", "description"}


def test_a_retried_failure_replaces_its_row_and_new_personas_are_counted(tmp_path):
    def row(key, status, raw):
        return {"key": key, "task": "t", "input_id": "p", "status": status, "output": None, "raw_output": [raw],
                "error": None if status == "ok" else "bad", "template": "t", "template_version": "1", "options": {},
                "model": "fake", "sampling": {}, "seed": 0, "prompt_tokens": 1, "completion_tokens": 2,
                "seconds": 0.1, "run_id": "r", "item_data": {"input": {}}, "prompt_hash": "h"}

    persona = {"id": "x", "persona": "A welder", "origin": "expansion"}
    with Store("personahub.duckdb") as store:
        assert store.write_generations([row("a", "failed", "first"), row("b", "ok", "b")], [persona, persona]) == 1
        assert store.write_generations([row("a", "ok", "second")], [persona]) == 0
        got = store.query("SELECT key, status, raw_output, attempts FROM generations ORDER BY key")
    assert got == [("a", "ok", '["second"]', 2), ("b", "ok", '["b"]', 1)]


def test_completions_are_cached_across_runs(personas_file):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = lambda req: PROBLEM
    first = run_task("math", backend="fake")
    with Store("personahub.duckdb") as store:
        store.con.execute("DELETE FROM generations")
    again = run_task("math", backend="fake")
    assert first["cached_calls"] == 0 and again["cached_calls"] == again["items_done"] == len(PERSONAS)


@pytest.mark.slow
def test_import_json_summary_counts_what_the_file_held(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"persona": p}) + "\n" for p in PERSONAS * 2) + "not json\n")
    summary = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    assert (summary["items_done"], summary["items_skipped"], summary["items_failed"]) == (len(PERSONAS), len(PERSONAS), 1)


def test_personas_stream_in_chunks_while_the_store_answers_key_checks():
    from personahub_core.selection import iter_persona_chunks, select_personas

    with Store("personahub.duckdb") as store:
        store.con.execute("INSERT INTO personas (id, persona, origin) "
                          "SELECT 'p' || lpad(i::VARCHAR, 2, '0'), 'A welder, number ' || i, 'import' FROM range(25) t(i)")
        store.con.execute("INSERT INTO dedup_marks (persona_id, method, duplicate_of) VALUES ('p03', 'minhash', 'p02')")
        chunks = []
        for chunk in iter_persona_chunks(store, ["persona~welder"], chunk=10):
            # Nothing is left open between chunks: the store answers other queries meanwhile.
            assert store.existing_keys([p["id"] for p in chunk]) == set()
            chunks.append(chunk)
        assert [len(c) for c in chunks] == [9, 10, 5]  # windows of 10 creation numbers, one left out
        ids = [p["id"] for c in chunks for p in c]
        assert ids == [f"p{i:02d}" for i in range(25) if i != 3]  # creation order, the duplicate left out
        assert select_personas(store, ["persona~welder"]) == [p for c in chunks for p in c]
