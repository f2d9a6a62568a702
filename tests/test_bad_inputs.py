"""Inputs and outputs that used to lose or misread data (issue 21), one test per row: each input is
refused or skipped with one line naming file and line, nothing stored is lost, no output is half written."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path

import duckdb
import pytest

from personahub_core.errors import PersonaHubError, UsageError
from personahub_core.export import export
from personahub_core.ingest import MAX_LINE_BYTES, ingest_paths
from personahub_core.plugins import get_registry
from personahub_core.report import write_report
from personahub_core.store import NotAStore, Store, StoreError
from personahub_core.testing import PERSONAS, cli, last_json, run_task, write_jsonl

DEEP = "[" * 10_000 + "]" * 10_000  # deeper than Python's recursion limit


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(db: str | Path, sql: str) -> list:
    with Store(db, read_only=True) as store:
        return [r[0] for r in store.query(sql)]


@pytest.mark.slow  # subprocess runs of the command line
def test_row_1_no_out_overwrites_the_store_or_another_duckdb_file(tmp_path):
    run_task("import", ["--input", str(write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in PERSONAS]))])
    store = tmp_path / "personahub.duckdb"
    before = digest(store)
    (tmp_path / "link.jsonl").symlink_to(store)
    os.mkdir(tmp_path / "sub")
    duckdb.connect("other.duckdb").close()
    with Store(store, read_only=True) as opened:
        for fmt, out in (("jsonl", "personahub.duckdb"), ("csv", "sub/../personahub.duckdb"), ("parquet", "link.jsonl"),
                         ("hf", str(store)), ("jsonl", "personahub.duckdb.wal")):
            with pytest.raises(UsageError, match="is the store"):
                export(opened, "personas", fmt, Path(out), formats=get_registry().export_formats)
        with pytest.raises(UsageError, match="is the store"):
            write_report(opened, tmp_path / "link.jsonl", quiet=True)
        with pytest.raises(UsageError, match="other.duckdb: is a DuckDB database; refusing to overwrite it"):
            export(opened, "personas", "jsonl", Path("other.duckdb"))
    result = cli("report", "--out", "personahub.duckdb")
    assert result.returncode == 2
    assert one_line(result) == "error: --out personahub.duckdb: that is the store personahub.duckdb; choose another file"
    assert digest(store) == before and stored(store, "SELECT count(*) FROM personas") == [len(PERSONAS)]


@pytest.mark.slow  # subprocess runs of the command line
def test_row_3_values_that_are_not_strings_are_skipped_counted_and_named(tmp_path):
    values = [123, 4.5, True, {"a": 1}, ["l", "m"]]
    lines = [json.dumps({"text": v}) for v in values] + ['{"text": ' + DEEP + "}", json.dumps({"text": "a real text"})]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("ingest", "d.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    assert (last_json(result)["added"], last_json(result)["bad"]) == (1, 6)
    assert "d.jsonl:1: field 'text' holds a number, not text" in result.stderr
    assert "d.jsonl:4: field 'text' holds an object, not text" in result.stderr
    assert stored("personahub.duckdb", "SELECT text FROM documents") == ["a real text"]

    (tmp_path / "p.jsonl").write_text("\n".join(line.replace('"text"', '"persona"') for line in lines) + "\n")
    summary = run_task("import", ["--input", "p.jsonl"], db="p.duckdb")
    assert (summary["items_done"], summary["items_failed"]) == (1, 6)
    assert "p.jsonl:5: 'persona' holds a list, not text; skipped" in summary["notes"]
    assert stored("p.duckdb", "SELECT persona FROM personas") == ["a real text"]


def test_row_4_ndjson_and_jsonl_in_any_case_are_json_lines(tmp_path):
    write_jsonl(tmp_path / "a.NDJSON", [{"persona": PERSONAS[0]}])
    write_jsonl(tmp_path / "b.ndjson", [{"persona": PERSONAS[1]}])
    with gzip.open(tmp_path / "c.JSONL.GZ", "wt") as f:
        f.write(json.dumps({"persona": PERSONAS[2]}) + "\n")
    names = ["a.NDJSON", "b.ndjson", "c.JSONL.GZ"]
    for name in names:
        run_task("import", ["--input", name])
    with Store("docs.duckdb") as store:
        ingest_paths(store, [Path(n) for n in names], text_field="persona", quiet=True)
    assert stored("personahub.duckdb", "SELECT persona FROM personas ORDER BY seq") == PERSONAS[:3]
    assert stored("docs.duckdb", "SELECT text FROM documents ORDER BY seq") == PERSONAS[:3]


@pytest.mark.slow  # subprocess runs of the command line
def test_row_8_long_lines_bad_files_and_random_bytes_are_named_and_the_rest_kept(tmp_path):
    long_line = json.dumps({"text": "x" * (MAX_LINE_BYTES + 1)})
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text("\n".join(
        [json.dumps({"text": "first text"}), long_line, json.dumps({"text": "last text"})]) + "\n")
    (tmp_path / "corpus" / "b.txt").write_bytes(bytes(range(256)) * 80)  # 20 KB, not UTF-8 from byte 128
    (tmp_path / "corpus" / "c.jsonl.gz").write_text(json.dumps({"text": "not gzipped"}) + "\n")
    (tmp_path / "corpus" / "d.txt").write_text("a document after the bad files")
    result = cli("ingest", "corpus")
    assert result.returncode == 2, result.stderr
    *_, unread_b, unread_c = result.stderr.strip().splitlines()
    assert unread_b == f"not read: {Path('corpus/b.txt')}: not UTF-8 text (invalid byte at offset 128)"
    assert unread_c == f"not read: {Path('corpus/c.jsonl.gz')}: not a gzip file"
    assert "corpus/a.jsonl:2: line longer than 8 MiB" in result.stderr
    assert stored("personahub.duckdb", "SELECT text FROM documents ORDER BY seq") == [
        "first text", "last text", "a document after the bad files"]
    result = cli("ingest", "corpus/b.txt", "--db", "b.duckdb")
    assert result.returncode == 2 and one_line(result).endswith("b.txt: not UTF-8 text (invalid byte at offset 128)")


@pytest.mark.slow  # subprocess runs of the command line
def test_row_9_import_of_deep_json_a_file_without_the_field_and_an_empty_file(tmp_path):
    (tmp_path / "deep.jsonl").write_text('{"persona": ' + DEEP + "}\n" + json.dumps({"persona": PERSONAS[0]}) + "\n")
    summary = run_task("import", ["--input", "deep.jsonl"])
    assert summary["items_done"] == 1 and summary["notes"] == ["deep.jsonl:1: JSON nested too deeply; skipped"]
    write_jsonl(tmp_path / "names.jsonl", [{"name": "Ada", "role": "engineer"}, {"name": "Bo", "bio": "a baker"}])
    with pytest.raises(UsageError) as raised:
        run_task("import", ["--input", "names.jsonl"])
    assert str(raised.value) == ("names.jsonl: no line has a usable 'persona' field (choose another with --field); "
                                 "fields found: bio, name, role")
    (tmp_path / "empty.jsonl").write_text("")
    result = cli("run", "--plugin", "import", "--input", "empty.jsonl")
    assert result.returncode == 2 and one_line(result) == "error: empty.jsonl: empty file, no personas in it"
    assert stored("personahub.duckdb", "SELECT persona FROM personas") == [PERSONAS[0]]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB file system of its own (tmpfs; the tests run as root), always unmounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path) -> None:
    with (disk / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.slow  # 40,000 texts onto a 2 MB disk
def test_row_10_a_full_disk_is_one_line_naming_the_store_or_the_output(tmp_path, small_disk):
    texts = [f"Document {i} about the harbour ferry timetable and the {i % 97} market stalls." for i in range(40_000)]
    write_jsonl(tmp_path / "big.jsonl", [{"text": t} for t in texts])
    write_jsonl(tmp_path / "p.jsonl", [{"persona": t} for t in texts])
    store = small_disk / "s.duckdb"
    full = f"store {store}: no space left on device; nothing of this write was kept"
    result = cli("ingest", "big.jsonl", "--db", store)
    assert result.returncode == 1 and one_line(result) == f"error: {full}"
    with pytest.raises(StoreError) as raised:
        run_task("import", ["--input", "p.jsonl"], db=store)
    assert str(raised.value) == full and raised.value.exit_code == 1
    assert stored(store, "SELECT count(*) FROM documents") == [0]  # the store opens, whole
    store.unlink()

    run_task("import", ["--input", str(write_jsonl(tmp_path / "few.jsonl", [{"persona": p} for p in PERSONAS]))])
    fill(small_disk)
    result = cli("export", "personas", "--format", "parquet", "-q", "--out", small_disk / "e.parquet")
    assert result.returncode == 1 and one_line(result) == f"error: --out {small_disk / 'e.parquet'}: no space left on device"
    with Store("personahub.duckdb", read_only=True) as opened, pytest.raises(PersonaHubError) as raised:
        write_report(opened, small_disk / "r.html", quiet=True)
    assert str(raised.value) == f"--out {small_disk / 'r.html'}: no space left on device"
    assert sorted(os.listdir(small_disk)) == ["filler"]  # no .partial left


def test_row_12_another_programs_duckdb_database_is_refused_untouched(tmp_path):
    con = duckdb.connect("sales.duckdb")
    con.execute("CREATE TABLE orders AS SELECT range AS id FROM range(10)")
    con.close()
    before = digest(tmp_path / "sales.duckdb")
    write_jsonl(tmp_path / "d.jsonl", [{"text": "a text"}])
    refused = "sales.duckdb is a DuckDB database but not a PersonaHub store (tables: orders); refusing to touch it"
    for args in (["ingest", "d.jsonl"], ["stats"]):
        result = cli(*args, "--db", "sales.duckdb")
        assert result.returncode == 2 and one_line(result) == f"error: {refused}"
    with pytest.raises(NotAStore, match="refusing to touch it"):
        run_task("import", ["--input", "d.jsonl"], db="sales.duckdb")
    assert digest(tmp_path / "sales.duckdb") == before


def test_row_14_an_export_clears_a_killed_exports_partial_file(tmp_path, small_disk):
    run_task("import", ["--input", str(write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in PERSONAS]))])
    out = small_disk / "personas.jsonl"
    stale = small_disk / ".personas.jsonl.partial"
    stale.write_bytes(b"\0" * 1_900_000)  # a killed export's leftover, filling most of the disk
    with Store("personahub.duckdb", read_only=True) as store:
        export(store, "personas", "jsonl", out, full=True)
    assert sorted(os.listdir(small_disk)) == ["personas.jsonl"]
    assert [json.loads(line)["persona"] for line in out.read_text().splitlines()] == PERSONAS
