"""Ingest, import, Text-to-Persona, Persona-to-Persona and export, with the fake backend."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import PERSONAS, cli, last_json, write_jsonl

TEXTS = [
    "The county library reopens on Monday after flood repairs; the children's corner has new shelving.",
    "Release 2.4 adds async connection pooling and drops support for the old config format.",
    "Whisk the eggs with sugar until pale, fold in the flour, and bake for twenty minutes.",
]


def documents():
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query_dicts("SELECT id, text, source_id, source_file FROM documents ORDER BY seq")


def test_ingest_reads_every_format_and_collapses_exact_duplicates(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": "n1", "text": TEXTS[0]}, {"id": "n2", "text": TEXTS[0]}])
    (tmp_path / "b.json").write_text(json.dumps([{"content": TEXTS[1]}]))
    with open(tmp_path / "c.csv", "w", newline="") as f:
        csv.writer(f).writerows([["body", "doc_id"], [TEXTS[2], "r9"]])
    pq.write_table(pa.table({"text": ["A parquet text about sheep shearing season.", "  "]}), tmp_path / "d.parquet")
    with gzip.open(tmp_path / "e.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "Gzipped notice: the ferry timetable changes on Sunday."}) + "\n")
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "one.txt").write_text("A whole plain text file is one document.\nEven with two lines.")
    summary = last_json(cli("ingest", tmp_path / "a.jsonl", tmp_path / "b.json", tmp_path / "c.csv",
                            tmp_path / "d.parquet", tmp_path / "e.jsonl.gz", folder, "--json", check=True))
    assert summary["added"] == 6 and summary["duplicates"] == 1 and summary["bad"] == 1
    docs = {d["text"]: d for d in documents()}
    assert docs[TEXTS[0]]["source_id"] == "n1"  # original id kept beside the content-hash id
    assert docs[TEXTS[2]]["source_id"] == "r9" and docs[TEXTS[2]]["source_file"].endswith("c.csv")
    # Ingesting again adds nothing.
    again = last_json(cli("ingest", tmp_path / "a.jsonl", folder, "--json", check=True))
    assert again["added"] == 0 and len(documents()) == 6


def test_ingest_reports_bad_lines_with_file_and_line(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"text": TEXTS[0]}) + "\n{not json\n" + json.dumps({"title": "no text"}) + "\n")
    result = cli("ingest", path, check=True)
    assert f"{path}:2: invalid JSON" in result.stderr
    assert f"{path}:3: no text field" in result.stderr
    assert len(documents()) == 1


def test_ingest_text_field_and_lines_mode(tmp_path):
    write_jsonl(tmp_path / "posts.jsonl", [{"message": "First forum post about model trains."}])
    (tmp_path / "lines.txt").write_text("line one is a document\n\nline two is another\n")
    cli("ingest", tmp_path / "posts.jsonl", "--text-field", "message", check=True)
    cli("ingest", tmp_path / "lines.txt", "--lines", check=True)
    assert [d["text"] for d in documents()] == ["First forum post about model trains.",
                                                 "line one is a document", "line two is another"]


def test_ingest_missing_file_and_unknown_format_are_one_line_errors(tmp_path):
    missing = cli("ingest", tmp_path / "nope.jsonl")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "x.docx").write_text("?")
    unknown = cli("ingest", tmp_path / "x.docx")
    assert unknown.returncode == 2 and "unknown format" in unknown.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr


def test_import_keeps_ids_reports_bad_lines_and_is_idempotent(tmp_path):
    path = tmp_path / "hub.jsonl"
    path.write_text(
        json.dumps({"persona": PERSONAS[0], "id": "p-1"}) + "\n"
        + "{broken\n"
        + json.dumps({"persona": ""}) + "\n"
        + json.dumps({"persona": PERSONAS[1]}) + "\n"
    )
    result = cli("run", "--plugin", "import", "--input", path, "--json", check=True)
    summary = last_json(result)
    assert summary["items_done"] == 2 and summary["items_failed"] == 2
    assert f"{path}:2: invalid JSON" in result.stderr and f"{path}:3: no 'persona' text" in result.stderr
    again = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    assert again["items_done"] == 0 and again["items_skipped"] == 2
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.scalar("SELECT source_id FROM personas WHERE persona = ?", [PERSONAS[0]]) == "p-1"


def test_import_plain_text_one_persona_per_line(tmp_path):
    (tmp_path / "list.txt").write_text("\n".join(PERSONAS[:3]) + "\n")
    assert last_json(cli("run", "--plugin", "import", "--input", tmp_path / "list.txt", "--json", "-q",
                         check=True))["items_done"] == 3


def test_import_missing_input_is_one_line_error(tmp_path):
    result = cli("run", "--plugin", "import", "--input", tmp_path / "absent.jsonl")
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


def answer_by_prompt(req):
    """Distinct, valid persona answers so provenance can be followed."""
    tail = req.prompt[-120:].replace("\n", " ")
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
    assert call.prompt.count("Text: ") >= 3 and "Who is likely to like this text? A" in call.prompt
    assert len(call.prompt.split("Text: ")[-1]) < 500
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


def test_export_personas_full_has_provenance_and_hides_duplicates(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = answer_by_prompt
    run_task("persona-to-persona", ["--hops", "1"], backend="fake")
    with Store("personahub.duckdb") as store:
        dup = store.scalar("SELECT id FROM personas WHERE origin = 'expansion' ORDER BY seq LIMIT 1")
        store.con.execute("INSERT INTO dedup_marks (persona_id, method, reason) VALUES (?, 'test', 'marked')", [dup])
    cli("export", "personas", "--format", "jsonl", "--out", tmp_path / "p.jsonl", "--full", check=True)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 11 and dup not in {r["id"] for r in rows}
    for key in ("persona", "id", "origin", "source_id", "parent_id", "hop", "relation", "model"):
        assert key in rows[0]
    expansion = next(r for r in rows if r["origin"] == "expansion")
    assert expansion["parent_id"] and expansion["relation"] and expansion["hop"] == 1 and expansion["model"] == "fake"
    cli("export", "personas", "--format", "csv", "--out", tmp_path / "all.csv", "--all", check=True)
    with open(tmp_path / "all.csv") as f:
        assert len(list(csv.DictReader(f))) == 12
    cli("export", "personas", "--format", "parquet", "--out", tmp_path / "p.parquet", check=True)
    assert pq.read_table(tmp_path / "p.parquet").column_names == ["persona"]


def test_export_errors_are_one_line(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    unknown = cli("export", "nothing-here", "--out", tmp_path / "x.jsonl")
    assert unknown.returncode == 2 and "nothing stored for 'nothing-here'" in unknown.stderr
    badfmt = cli("export", "personas", "--format", "xml", "--out", tmp_path / "x.xml")
    assert badfmt.returncode == 2 and "--format" in badfmt.stderr
    nodir = cli("export", "personas", "--out", tmp_path / "no" / "x.jsonl")
    assert nodir.returncode == 2 and "does not exist" in nodir.stderr
