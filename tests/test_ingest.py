"""Ingest through DuckDB's readers: nothing different is collapsed, bad input is named (import: plugins/import/tests)."""

from __future__ import annotations

import pytest

import gzip
import json

from personahub_core.store import Store

from personahub_core.testing import cli, last_json


def stored(sql: str) -> list[tuple]:
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query(sql)


def test_different_texts_under_the_same_source_ids_are_all_kept(tmp_path):
    (tmp_path / "a.csv").write_text("id,text\n1,A one\n2,A two\n3,A three\n")
    (tmp_path / "b.csv").write_text("id,text\n1,B one\n2,B two\n3,B three\n")
    summary = last_json(cli("ingest", tmp_path / "a.csv", tmp_path / "b.csv", "--json", check=True))
    assert (summary["added"], summary["duplicates"]) == (6, 0)
    rows = stored("SELECT text, source_id, source_file FROM documents ORDER BY seq")
    assert [(t, s) for t, s, _ in rows] == [("A one", "1"), ("A two", "2"), ("A three", "3"),
                                          ("B one", "1"), ("B two", "2"), ("B three", "3")]
    # The same texts again (under other ids, with other spacing) are still collapsed.
    (tmp_path / "c.csv").write_text("id,text\n9,A   one\n8,  B two\n")
    again = last_json(cli("ingest", tmp_path / "c.csv", "--json", check=True))
    assert (again["added"], again["duplicates"]) == (0, 2)


@pytest.mark.slow
def test_a_broken_gzip_is_one_line_naming_the_file(tmp_path):
    good = tmp_path / "good.jsonl.gz"
    with gzip.open(good, "wt") as f:
        for i in range(2000):
            f.write(json.dumps({"text": f"document number {i} about a river ferry"}) + "\n")
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text(json.dumps({"text": "plain text named .gz"}) + "\n")
    for path, what in [(truncated, "truncated gzip"), (fake, "not a gzip file")]:
        for args in (["ingest", path], ["run", "--plugin", "import", "--input", path]):
            result = cli(*args)
            assert result.returncode == 2, result.stderr
            assert f"{path}: {what}" in result.stderr
            assert "Traceback" not in result.stderr and "internal error" not in result.stderr
            assert "Aborted" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_invalid_utf8_lines_are_kept_with_replacement_and_counted(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "caf\xe9 au lait in the morning"}\n{"text": "fine text"}\n'
                     b'{"text": "na\xefve reader of poems"}\n')
    result = cli("ingest", path, "--json")
    assert result.returncode == 0, result.stderr
    assert last_json(result)["added"] == 3 and last_json(result)["invalid_utf8_replaced"] == 2
    assert "2 line(s) had invalid UTF-8, replaced" in result.stderr


@pytest.mark.slow
def test_empty_inputs_of_every_kind_are_no_usable_records(tmp_path):
    for name in ("empty.jsonl", "empty.csv", "empty.txt"):
        (tmp_path / name).write_text("")
        result = cli("ingest", tmp_path / name)
        assert result.returncode == 2 and "no usable records" in result.stderr, (name, result.stderr)


def test_a_field_over_the_old_csv_limit_is_read_and_bad_csv_rows_are_named(tmp_path):
    big = "word " * 60_000  # 300 KB: over Python's csv field limit of 128 KiB
    path = tmp_path / "big.csv"
    path.write_text(f'id,text\n1,"{big}"\n2,\n3,"a short text"\n')
    result = cli("ingest", path, "--json")
    assert result.returncode == 0, result.stderr
    assert (last_json(result)["added"], last_json(result)["bad"]) == (2, 1)
    assert f"{path}:3: field 'text' is empty" in result.stderr
    assert len(stored("SELECT text FROM documents WHERE length(text) > 200000")) == 1
