"""``personahub run --dry-run``: what would run and what it would cost, with no model and no write."""

from __future__ import annotations

import hashlib

import pytest

from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import PERSONAS, cli, last_json

PROBLEM = "A beekeeper has 12 hives that each give 18 kg of honey. How many kilograms does she harvest in all?"


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_dry_run_counts_items_and_writes_nothing(tmp_path, personas_file):
    db = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(personas_file)], db=db)
    # Two problems stored, one rejected (no question), three personas still new.
    FakeBackend.responder = lambda req: PROBLEM if "nurse" in req.completion.rsplit("Persona:", 1)[-1] or \
        "railway" in req.completion.rsplit("Persona:", 1)[-1] else "Honey is sweet and the bees are busy all summer long."
    run_task("math", db=db, backend="fake", limit=3)
    before = digest(db)
    plan = last_json(cli("run", "--plugin", "math", "--dry-run", "--json", "--backend", "fake", "--db", db, check=True))
    assert digest(db) == before
    stage = plan["stages"][0]
    assert (stage["items_new"], stage["items_done"], stage["items_failed_earlier"], stage["items_to_run"]) == (3, 2, 1, 3)
    assert plan["items_to_run"] == 3 and plan["dry_run"] is True
    # Prompt tokens: the fake backend counts words, so the ratio measured on earlier rows is real.
    assert stage["prompt_tokens"] > 3 * 100 and "measured on" in stage["prompt_tokens_from"]
    assert stage["completion_tokens_max"] == 3 * 160  # math's max_tokens
    assert 0 < stage["completion_tokens_expected"] <= stage["completion_tokens_max"]
    # The speed comes from the earlier run; the time follows from it (rounded to 0.1 s, so it may be 0.0 here).
    assert stage["completion_tokens_per_second"] > 0
    assert stage["seconds_expected"] == pytest.approx(
        stage["completion_tokens_expected"] / stage["completion_tokens_per_second"], abs=0.05)
    retry = last_json(cli("run", "--plugin", "math", "--dry-run", "--json", "--backend", "fake", "--db", db,
                          "--retry-failed", "--limit", "2", check=True))
    assert (retry["stages"][0]["items_to_retry"], retry["items_to_run"]) == (1, 2)
    assert digest(db) == before


@pytest.mark.slow
def test_dry_run_loads_no_model_and_says_time_unknown_without_earlier_runs(tmp_path, personas_file):
    db = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(personas_file)], db=db)
    before = digest(db)
    result = cli("run", "--plugin", "math", "--dry-run", "--json", "--db", db, "--model", tmp_path / "missing.gguf")
    assert result.returncode == 0, result.stderr  # a run would fail: the model file does not exist
    plan = last_json(result)
    assert plan["items_to_run"] == len(PERSONAS) and plan["seconds_expected"] is None
    assert "unknown" in plan["stages"][0]["speed_from"] and "unknown" in result.stderr
    assert digest(db) == before


@pytest.mark.slow
def test_dry_run_on_a_missing_store_creates_nothing_and_plans_the_bootstrap(tmp_path):
    result = cli("run", "--plugin", "npc", "--dry-run", "--json", "--backend", "fake", check=True)
    assert list(tmp_path.iterdir()) == []  # no store, no index, no report
    plan = last_json(result)
    assert plan["store_exists"] is False
    source, npc = plan["stages"]
    assert source["task"] == "text-to-persona" and source["items_to_run"] >= 80  # one per bundled text
    assert npc["task"] == "npc" and npc["items_to_run"] == source["items_to_run"] and npc["prompt_tokens"] > 0


def test_dry_run_rejects_what_a_run_would_reject(tmp_path):
    result = cli("run", "--plugin", "math", "--dry-run", "--difficulty", "impossible", "--backend", "fake")
    assert result.returncode == 2 and "--difficulty" in result.stderr
    assert list(tmp_path.iterdir()) == []
