"""Importing personas (PersonaHub's jsonl, or plain text one per line) through DuckDB's readers: ids kept,
nothing different collapsed, bad lines named, a second import adding nothing."""

from __future__ import annotations

import pytest

import json

from personahub_core.store import Store
from personahub_core.testing import PERSONAS, cli, last_json, write_jsonl


def stored(sql: str) -> list[tuple]:
    with Store("personahub.duckdb", read_only=True) as store:
        return store.query(sql)


@pytest.mark.slow
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
    assert f"{path}:2: invalid JSON" in result.stderr and f"{path}:3: 'persona' is empty" in result.stderr
    again = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    assert again["items_done"] == 0 and again["items_skipped"] == 2
    with Store("personahub.duckdb", read_only=True) as store:
        assert store.scalar("SELECT source_id FROM personas WHERE persona = ?", [PERSONAS[0]]) == "p-1"


@pytest.mark.slow
def test_import_plain_text_one_persona_per_line(tmp_path):
    (tmp_path / "list.txt").write_text("\n".join(PERSONAS[:3]) + "\n")
    assert last_json(cli("run", "--plugin", "import", "--input", tmp_path / "list.txt", "--json", "-q",
                         check=True))["items_done"] == 3


def test_import_missing_input_is_one_line_error(tmp_path):
    result = cli("run", "--plugin", "import", "--input", tmp_path / "absent.jsonl")
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_import_keeps_a_different_persona_under_a_repeated_id(tmp_path):
    path = write_jsonl(tmp_path / "hub.jsonl", [{"id": "7", "persona": PERSONAS[0]}, {"id": "7", "persona": PERSONAS[1]},
                                                {"id": "7", "persona": " " + PERSONAS[0]}])
    summary = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    assert (summary["items_done"], summary["items_skipped"]) == (2, 1)  # the same line twice is one persona
    assert stored("SELECT persona, source_id FROM personas ORDER BY seq") == [(PERSONAS[0], "7"), (PERSONAS[1], "7")]


@pytest.mark.slow
def test_import_of_the_same_file_again_adds_nothing_and_limit_is_kept(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in PERSONAS])
    first = last_json(cli("run", "--plugin", "import", "--input", path, "--limit", "4", "--json", "-q", check=True))
    assert (first["items_done"], first["items_skipped"]) == (4, 0)
    rest = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    again = last_json(cli("run", "--plugin", "import", "--input", path, "--json", "-q", check=True))
    assert (rest["items_done"], again["items_done"], again["items_skipped"]) == (2, 0, 6)
    assert [r[0] for r in stored("SELECT persona FROM personas ORDER BY seq")] == PERSONAS


@pytest.mark.slow
def test_import_replaces_invalid_utf8_and_says_how_many_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"persona": "A caf\xe9 owner who roasts beans at dawn"}\n{"persona": "A ferry pilot"}\n')
    result = cli("run", "--plugin", "import", "--input", path, "--json")
    assert result.returncode == 0 and last_json(result)["items_done"] == 2
    assert "1 line(s) had invalid UTF-8, replaced" in result.stderr
