"""The command-line contracts of DESIGN.md, checked through the installed console script."""

from __future__ import annotations

import json

import duckdb

from conftest import cli, last_json


def test_plugins_json_lists_every_task_with_its_kind():
    result = cli("plugins", "--json", check=True)
    plugins = json.loads(result.stdout)
    assert all(set(p) == {"name", "version", "tasks"} for p in plugins)
    tasks = {t["name"]: t["kind"] for p in plugins for t in p["tasks"]}
    assert tasks["text-to-persona"] == "source"
    assert tasks["import"] == "source"
    assert tasks["persona-to-persona"] == "expander"
    by_name = {p["name"]: p for p in plugins}
    assert by_name["personahub-import"]["version"] == "0.1.0"


def test_unknown_task_exits_2_with_one_line_naming_installed_tasks():
    result = cli("run", "--plugin", "no-such-task")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "no-such-task" in lines[0] and "text-to-persona" in lines[0]


def test_unknown_task_of_ours_names_the_package_to_install():
    result = cli("run", "--plugin", "text-to-persona", env={"PERSONAHUB_LOAD_PLUGINS": "import"})
    assert result.returncode == 2
    assert "pip install personahub-text-to-persona" in result.stderr
    assert "import" in result.stderr


def test_load_plugins_allowlist_empty_means_none():
    plugins = json.loads(cli("plugins", "--json", env={"PERSONAHUB_LOAD_PLUGINS": ""}, check=True).stdout)
    assert [t for p in plugins for t in p["tasks"]] == []


def test_run_json_last_line_has_the_contract_fields(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "--json", "-q", check=True)
    result = cli("run", "--plugin", "persona-to-persona", "--backend", "fake", "--hops", "1", "--json", "-q", check=True)
    summary = last_json(result)
    for key in ("task", "items_done", "items_failed", "completion_tokens", "seconds"):
        assert key in summary
    assert summary["task"] == "persona-to-persona" and summary["items_done"] == 6


def test_unknown_task_option_is_one_line_error(personas_file):
    result = cli("run", "--plugin", "import", "--input", personas_file, "--colour", "red")
    assert result.returncode == 2
    assert "has no option --colour" in result.stderr and "--input" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_text_to_persona_without_documents_says_to_ingest(tmp_path):
    result = cli("run", "--plugin", "text-to-persona", "--backend", "fake", "--db", tmp_path / "empty.duckdb")
    assert result.returncode == 2
    assert "has no documents" in result.stderr and "personahub ingest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_option_value_is_one_line_error():
    result = cli("run", "--plugin", "persona-to-persona", "--backend", "fake", "--hops", "many")
    assert result.returncode == 2
    assert "--hops" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_store_file_is_refused_and_left_untouched(tmp_path):
    bad = tmp_path / "personahub.duckdb"
    bad.write_bytes(b"this is not a database at all" * 10)
    before = bad.read_bytes()
    result = cli("stats")
    assert result.returncode != 0 and "not a DuckDB file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert bad.read_bytes() == before


def test_missing_store_directory_is_one_line_error(tmp_path):
    result = cli("ingest", tmp_path, "--db", tmp_path / "nowhere" / "x.duckdb")
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_store_in_use_by_another_process_is_a_clear_error(tmp_path, personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    holder = duckdb.connect(str(tmp_path / "personahub.duckdb"))  # this process holds the write lock
    try:
        result = cli("run", "--plugin", "import", "--input", personas_file, "-q")
    finally:
        holder.close()
    assert result.returncode != 0
    assert "in use by another run" in result.stderr


def test_invalid_toml_is_one_line_error_naming_the_file(tmp_path):
    (tmp_path / "personahub.toml").write_text("batch_size = [unclosed\n")
    result = cli("config")
    assert result.returncode != 0 and "personahub.toml" in result.stderr and "invalid TOML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_setting_value_names_the_field(tmp_path):
    (tmp_path / "personahub.toml").write_text('batch_size = "lots"\n')
    result = cli("config")
    assert result.returncode != 0 and "batch_size" in result.stderr and "personahub.toml" in result.stderr


def test_unknown_setting_in_toml_is_reported(tmp_path):
    (tmp_path / "personahub.toml").write_text("bach_size = 4\n")
    result = cli("config")
    assert result.returncode != 0 and "bach_size" in result.stderr


def test_unknown_backend_value_is_an_error(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    result = cli("run", "--plugin", "persona-to-persona", "--backend", "gpt-9")
    assert result.returncode != 0 and "backend" in result.stderr and "Traceback" not in result.stderr


def test_config_shows_value_and_origin_flag_env_file_default(tmp_path):
    (tmp_path / "personahub.toml").write_text("batch_size = 4\nseed = 3\nmax_tokens = 50\n")
    result = cli("config", "--json", env={"PERSONAHUB_SEED": "7"}, check=True)
    cfg = json.loads(result.stdout)
    assert cfg["batch_size"] == {"value": 4, "from": "personahub.toml"}
    assert cfg["seed"] == {"value": 7, "from": "env PERSONAHUB_SEED"}  # env beats the file
    assert cfg["temperature"]["from"] == "default"
    flagged = json.loads(cli("config", "--json", "--db", "other.duckdb", check=True).stdout)
    assert flagged["db"] == {"value": "other.duckdb", "from": "flag"}


def test_db_from_environment(tmp_path, personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", env={"PERSONAHUB_DB": "env.duckdb"}, check=True)
    assert (tmp_path / "env.duckdb").exists() and not (tmp_path / "personahub.duckdb").exists()


def test_stats_json_counts(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    stats = json.loads(cli("stats", "--json", check=True).stdout)
    assert stats["personas"] == 6 and stats["personas_by_origin"] == {"import": 6}
