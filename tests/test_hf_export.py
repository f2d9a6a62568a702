"""``export --format hf`` (a dataset ``datasets.load_from_disk`` opens, with a card) and ``push``."""

from __future__ import annotations

import json
import os
import socket
import stat

import datasets
import pytest
import yaml

from personahub_core.diversity_command import run_study
from personahub_core.testing import FakeBackend, run_task

from personahub_core.testing import PERSONAS, cli, write_jsonl

PROBLEM = "A beekeeper has 12 hives that each give 18 kg of honey. How many kilograms does she harvest in all?"


@pytest.fixture
def db(tmp_path, personas_file):
    path = tmp_path / "store.duckdb"
    run_task("import", ["--input", str(personas_file)], db=path)
    FakeBackend.responder = lambda req: PROBLEM
    run_task("math", db=path, backend="fake", limit=4)
    return path


def card(folder) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.mark.slow
def test_export_hf_opens_with_datasets_and_has_a_card(tmp_path, db):
    out = tmp_path / "math-hf"
    cli("export", "math", "--format", "hf", "--out", out, "--db", db, check=True)
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["input persona", "synthesized text", "description"]
    assert len(ds) == 4 and set(ds["input persona"]) <= set(PERSONAS)
    assert all(t == PROBLEM for t in ds["synthesized text"]) and set(ds["description"]) == {"math problem"}
    meta, body = card(out)
    assert meta["personahub"]["task"] == "math" and meta["personahub"]["rows"] == 4
    assert meta["personahub"]["models"] == ["fake"] and meta["personahub"]["statuses"] == {"ok": 4}
    assert "license" in meta and meta["size_categories"] == ["n<1K"]
    assert "How it was made" in body and "import 4 (imported from a file as given)" in body  # the rows' personas


@pytest.mark.slow
def test_export_hf_full_keeps_provenance_and_replaces_an_earlier_export(tmp_path, db):
    out = tmp_path / "math-hf"
    cli("export", "math", "--format", "hf", "--out", out, "--db", db, check=True)
    run_task("math", db=db, backend="fake")  # two more rows
    cli("export", "math", "--format", "hf", "--out", out, "--db", db, "--full", check=True)
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == len(PERSONAS)
    for column in ("persona_id", "model", "sampling", "seed", "run_id", "options"):
        assert column in ds.column_names
    assert json.loads(ds[0]["options"])["mode"] == "persona-few-shot"
    assert card(out)[0]["personahub"]["full"] is True
    personas = tmp_path / "personas-hf"
    cli("export", "personas", "--format", "hf", "--out", personas, "--db", db, "--full", check=True)
    assert sorted(datasets.load_from_disk(str(personas))["persona"]) == sorted(PERSONAS)


@pytest.mark.slow
def test_export_hf_refuses_a_folder_that_is_not_an_export(tmp_path, db):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = cli("export", "math", "--format", "hf", "--out", out, "--db", db)
    assert result.returncode == 2 and "not an earlier dataset export" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_push_without_a_token_is_a_one_line_error(tmp_path, db):
    env = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf-home"), "HUGGING_FACE_HUB_TOKEN": ""}
    result = cli("push", "math", "--repo", "me/math", "--db", db, env=env)
    assert result.returncode == 1
    assert "no Hugging Face token" in result.stderr and "HF_TOKEN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("full", [[], ["--full"]])  # --full rows (prompts rebuilt) are made before the upload
@pytest.mark.slow
def test_push_to_an_unreachable_hub_is_a_one_line_error(tmp_path, db, full):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"HF_TOKEN": "hf_test", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    result = cli("push", "math", "--repo", "me/math", "--db", db, "-q", *full, env=env)
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "push to me/math failed" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_push_checks_the_repo_name(db):
    result = cli("push", "math", "--repo", "just-a-name", "--db", db, env={"HF_TOKEN": "hf_test"})
    assert result.returncode == 2 and "ORG/NAME" in result.stderr


def test_without_datasets_the_error_says_how_to_install(tmp_path, db):
    blocker = tmp_path / "blocked" / "datasets"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    result = cli("export", "math", "--format", "hf", "--out", tmp_path / "out", "--db", db,
                 env={"PYTHONPATH": str(blocker.parent)})
    assert result.returncode == 1
    assert "pip install 'personahub[hf]'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_card_states_only_what_the_store_records(tmp_path, db):
    out = tmp_path / "math-hf"
    cli("export", "math", "--format", "hf", "--out", out, "--db", db, check=True)
    meta, body = card(out)
    assert "imported from a file as given" in body
    assert "web text" not in body and "text-to-persona" not in body and "persona-to-persona" not in body
    assert "Not deduplicated" in body and "Deduplicated:" not in body
    assert "`fake`" in body and "exported rows by status: ok 4" in body
    assert "## Diversity" not in body  # no study has been run

    twins = ["A ferry pilot who crosses the strait four times a day and knows every buoy on the way by its light",
             "A ferry pilot who crosses the strait four times a day and knows every buoy on the way by its lights"]
    run_task("import", ["--input", str(write_jsonl(tmp_path / "twins.jsonl", [{"persona": p} for p in twins]))], db=db)
    run_task("minhash", db=db)
    run_study("math", db=db, backend="fake", quiet=True)
    cli("export", "math", "--format", "hf", "--out", out, "--db", db, check=True)
    _, body = card(out)
    assert "Deduplicated: minhash marked 1" in body and "Not deduplicated" not in body
    assert "## Diversity" in body and "95% bootstrap intervals" in body and "No no-persona baseline" in body


@pytest.mark.slow
def test_export_folder_has_normal_permissions(tmp_path, db):
    old = os.umask(0o022)
    try:
        cli("export", "math", "--format", "hf", "--out", tmp_path / "math-hf", "--db", db, check=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "math-hf").stat().st_mode) == 0o755
