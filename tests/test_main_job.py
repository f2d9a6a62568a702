"""The main job from an empty folder: `personahub run --plugin npc` builds personas first when there are none."""

from __future__ import annotations

import json

import pytest

from personahub_core.testing import cli, last_json


@pytest.mark.slow  # the whole main job in a subprocess
def test_npc_from_an_empty_folder_bootstraps_personas_from_the_sample_corpus(tmp_path):
    result = cli("run", "--plugin", "npc", "--backend", "fake", "--limit", "2", "--json", check=True)
    assert "The store has no personas yet" in result.stderr
    assert "text-to-persona:" in result.stderr and "minhash:" in result.stderr
    assert "personahub export npc" in result.stderr  # says where the results are
    summary = last_json(result)
    assert summary["task"] == "npc" and summary["items_done"] == 2
    stats = json.loads(cli("stats", "--json", check=True).stdout)
    assert stats["documents"] >= 80  # the bundled corpus
    assert 80 <= stats["personas_by_origin"]["text"] <= 95  # one persona per text: its writer
    cli("export", "npc", "--format", "jsonl", "--out", tmp_path / "npc.jsonl", check=True)
    rows = [json.loads(line) for line in (tmp_path / "npc.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["input persona"] and r["synthesized text"] and r["description"] for r in rows)
    # A second run does not bootstrap again and only adds what is missing.
    again = cli("run", "--plugin", "npc", "--backend", "fake", "--limit", "1", "--json", check=True)
    assert "no personas yet" not in again.stderr and last_json(again)["items_done"] == 1
