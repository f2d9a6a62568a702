"""Ingest and export of personas, with the fake backend. Import, Text-to-Persona and Persona-to-Persona
are tested in their plugins (plugins/*/tests)."""

from __future__ import annotations

import pytest

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import cli, last_json, write_jsonl

TEXTS = [
    "The county library reopens on Monday after flood repairs; the children's corner has new shelving.",
    "Release 2.4 adds async connection pooling and drops support for the old config format.",
    "Whisk the eggs with sugar until pale, fold in the flour, and bake for twenty minutes.",
]


def documents():
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query_dicts("SELECT id, text, source_id, source_file FROM documents ORDER BY seq")


@pytest.mark.slow
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


def answer_by_prompt(req):
    """Distinct, valid persona answers so provenance can be followed."""
    tail = req.completion[-120:].replace("\n", " ")
    return f" person who cares about {abs(hash(tail)) % 10_000} things in their community."


@pytest.mark.slow
def test_export_personas_full_has_provenance_and_hides_duplicates(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    FakeBackend.responder = answer_by_prompt
    run_task("persona-to-persona", ["--hops", "1"], backend="fake")
    with Store("personahub.duckdb") as store:
        dup = store.scalar("SELECT id FROM personas WHERE origin = 'expansion' ORDER BY seq LIMIT 1")
        store.mark_personas("test", "test-run", [dup], [{"persona_id": dup, "reason": "marked"}])
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


@pytest.mark.slow
def test_export_errors_are_one_line(tmp_path, personas_file):
    run_task("import", ["--input", str(personas_file)])
    unknown = cli("export", "nothing-here", "--out", tmp_path / "x.jsonl")
    assert unknown.returncode == 2 and "nothing stored for 'nothing-here'" in unknown.stderr
    badfmt = cli("export", "personas", "--format", "xml", "--out", tmp_path / "x.xml")
    assert badfmt.returncode == 2 and "--format" in badfmt.stderr
    nodir = cli("export", "personas", "--out", tmp_path / "no" / "x.jsonl")
    assert nodir.returncode == 2 and "does not exist" in nodir.stderr
