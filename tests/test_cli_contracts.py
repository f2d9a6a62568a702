"""The command-line contracts of DESIGN.md, checked through the installed console script."""

from __future__ import annotations

import json
import resource
import subprocess

import duckdb
import pytest

from personahub_core.store import Store
from personahub_core.testing import PERSONAHUB, cli, last_json, write_jsonl
from fault_server import FaultServer


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


@pytest.mark.slow
def test_unknown_task_exits_2_with_one_line_naming_installed_tasks():
    result = cli("run", "--plugin", "no-such-task")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "no-such-task" in lines[0] and "text-to-persona" in lines[0]


def test_unknown_task_of_ours_names_the_package_to_install():
    result = cli("run", "--plugin", "text-to-persona", env={"PERSONAHUB_LOAD_PLUGINS": "import"})
    assert result.returncode == 2
    assert "personahub-text-to-persona" in result.stderr and "PERSONAHUB_LOAD_PLUGINS" in result.stderr
    assert "import" in result.stderr


def test_load_plugins_allowlist_empty_means_none():
    plugins = json.loads(cli("plugins", "--json", env={"PERSONAHUB_LOAD_PLUGINS": ""}, check=True).stdout)
    assert [t for p in plugins for t in p["tasks"]] == []


@pytest.mark.slow
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


@pytest.mark.slow
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
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": "A short text about bees."}])
    result = cli("ingest", corpus, "--db", tmp_path / "nowhere" / "x.duckdb")
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
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


@pytest.mark.slow
def test_unknown_backend_value_is_an_error(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    result = cli("run", "--plugin", "persona-to-persona", "--backend", "gpt-9")
    assert result.returncode != 0 and "backend" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_config_shows_value_and_origin_flag_env_file_default(tmp_path):
    (tmp_path / "personahub.toml").write_text("batch_size = 4\nseed = 3\nmax_tokens = 50\n")
    result = cli("config", "--json", env={"PERSONAHUB_SEED": "7"}, check=True)
    cfg = json.loads(result.stdout)
    assert cfg["batch_size"] == {"value": 4, "from": "personahub.toml"}
    assert cfg["seed"] == {"value": 7, "from": "env PERSONAHUB_SEED"}  # env beats the file
    assert cfg["temperature"]["from"] == "default"
    flagged = json.loads(cli("config", "--json", "--db", "other.duckdb", check=True).stdout)
    assert flagged["db"] == {"value": "other.duckdb", "from": "flag"}


@pytest.mark.slow
def test_db_from_environment(tmp_path, personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", env={"PERSONAHUB_DB": "env.duckdb"}, check=True)
    assert (tmp_path / "env.duckdb").exists() and not (tmp_path / "personahub.duckdb").exists()


@pytest.mark.slow
def test_stats_json_counts(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    stats = json.loads(cli("stats", "--json", check=True).stdout)
    assert stats["personas"] == 6 and stats["personas_by_origin"] == {"import": 6}


# -- exit codes: 2 usage or input errors, 1 runtime failures (README "Exit codes and runs") ---------------

@pytest.mark.parametrize("args", [
    ["--batch-size", "0"],
    ["--limit", "-1"],
    ["--backend", "openai", "--model", "m", "--base-url", "http://"],
    ["--where", "hopp<=2"],
    ["--bogus-flag"],
])
def test_usage_errors_exit_2_before_anything_is_written(tmp_path, args):
    # On an empty store a synthesizer would first build personas (the bootstrap): a bad option must stop it.
    result = cli("run", "--plugin", "math", "--backend", "fake", *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "personahub.duckdb").exists()


def test_bad_setting_in_environment_exits_2_naming_the_variable():
    result = cli("config", env={"personahub_batch_size": "0"})
    assert result.returncode == 2 and "personahub_batch_size" in result.stderr


@pytest.mark.slow
def test_run_in_which_every_item_failed_exits_1(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    with FaultServer(every=["500"] * 10) as server:
        result = cli("run", "--plugin", "math", "--backend", "openai", "--base-url", server.url, "--model", "test-model",
                     "--limit", "3", "--json", "-q", env={"PERSONAHUB_MAX_RETRIES": "0"})
    assert result.returncode == 1, result.stderr
    summary = last_json(result)
    assert summary["items_done"] == 0 and summary["items_failed"] == 3
    assert "all 3 items failed" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ingest_of_a_missing_path_creates_no_store(tmp_path):
    result = cli("ingest", "nowhere.jsonl")
    assert result.returncode == 2 and "nowhere.jsonl" in result.stderr
    assert not (tmp_path / "personahub.duckdb").exists()


# -- export: clear errors naming the requested path, never a temp file left behind -------------------------

def _leftovers(folder):
    return [p.name for p in folder.rglob("*.partial")]


@pytest.mark.slow
def test_export_to_a_directory_or_under_a_file_is_a_usage_error(tmp_path, personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    (tmp_path / "outdir").mkdir()
    result = cli("export", "personas", "--out", "outdir")
    assert result.returncode == 2 and "--out outdir: is a directory" in result.stderr
    result = cli("export", "personas", "--out", f"{personas_file.name}/p.jsonl")
    assert result.returncode == 2 and f"{personas_file.name} is not a directory" in result.stderr
    assert "internal error" not in result.stderr and _leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.slow
def test_export_that_fails_while_writing_names_the_path_and_leaves_no_partial_file(tmp_path, fmt):
    rows = [{"persona": f"Persona number {i} who writes long descriptions of {i} things."} for i in range(300)]
    write_jsonl(tmp_path / "many.jsonl", rows)
    cli("run", "--plugin", "import", "--input", "many.jsonl", "-q", check=True)
    # A file size limit of 4 KiB makes the write fail half way, as a full disk would.
    limited = subprocess.run(
        [PERSONAHUB, "export", "personas", "--format", fmt, "--out", f"out.{fmt}"], capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)), timeout=120,
    )
    assert limited.returncode == 1 and f"--out out.{fmt}: cannot write" in limited.stderr, limited.stderr
    assert not (tmp_path / f"out.{fmt}").exists() and _leftovers(tmp_path) == []


# -- settings layering and what `config` says ---------------------------------------------------------------

@pytest.mark.slow
def test_config_tells_where_each_value_came_from_in_any_case(tmp_path):
    (tmp_path / "personahub.toml").write_text("batch_size = 8\nseed = 3\n")
    cfg = json.loads(cli("config", "--json", env={"personahub_batch_size": "4"}, check=True).stdout)
    assert cfg["batch_size"] == {"value": 4, "from": "env personahub_batch_size"}  # env beats the file
    assert cfg["seed"] == {"value": 3, "from": "personahub.toml"}
    flagged = json.loads(cli("config", "--json", "--db", "x.duckdb", env={"PERSONAHUB_DB": "y.duckdb"}, check=True).stdout)
    assert flagged["db"] == {"value": "x.duckdb", "from": "flag"}  # a flag beats the environment


@pytest.mark.slow
def test_config_shows_the_chosen_backends_options_with_their_origins(tmp_path):
    # threads is llama.cpp's, base_url the HTTP backend's: the file may hold both, config shows the chosen one's.
    (tmp_path / "personahub.toml").write_text('threads = 2\nbase_url = "http://127.0.0.1:9/v1"\n')
    cfg = json.loads(cli("config", "--json", env={"PERSONAHUB_N_CTX": "4096"}, check=True).stdout)
    assert cfg["backend"] == {"value": "llama-cpp", "from": "default"}
    assert cfg["backend_options"] == {"n_ctx": {"value": 4096, "from": "env PERSONAHUB_N_CTX"},
                                      "threads": {"value": 2, "from": "personahub.toml"},
                                      "n_gpu_layers": {"value": 0, "from": "default"}}
    assert "n_ctx" not in cfg and "base_url" not in json.dumps(cfg)
    served = json.loads(cli("config", "--json", env={"PERSONAHUB_BACKEND": "openai"}, check=True).stdout)
    assert served["backend_options"]["base_url"] == {"value": "http://127.0.0.1:9/v1", "from": "personahub.toml"}
    assert "threads" not in served["backend_options"]
    table = cli("config", check=True).stdout
    assert "options of backend llama-cpp" in table and "n_gpu_layers" in table


@pytest.mark.parametrize("args, env, toml, message", [
    (["--n-ctx", "100"], {}, "", "flag: --n-ctx: Input should be greater than or equal to 256 (got '100')"),
    ([], {"PERSONAHUB_THREADS": "many"}, "",
     "environment: PERSONAHUB_THREADS: Input should be a valid integer, unable to parse string as an integer (got 'many')"),
    (["--backend", "openai", "--model", "m"], {}, "request_timeout = -1\n",
     "personahub.toml: request_timeout: Input should be greater than 0 (got '-1')"),
    ([], {}, "n_ctxx = 4096\n", "personahub.toml: unknown setting 'n_ctxx'"),
    ([], {"PERSONAHUB_MEMORY_LIMIT": "lots"}, "",
     "environment: PERSONAHUB_MEMORY_LIMIT: Value error, expected a size such as 512MB or 2GB (got 'lots')"),
])
def test_a_bad_backend_option_is_one_line_exit_2_before_anything_is_written(tmp_path, args, env, toml, message):
    (tmp_path / "personahub.toml").write_text(toml)
    result = cli("run", "--plugin", "math", *args, env=env)
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {message}")
    assert not (tmp_path / "personahub.duckdb").exists()


@pytest.mark.parametrize("args, message", [
    (["-o", "n_ctx=100"], "flag: --n-ctx: Input should be greater than or equal to 256 (got '100')"),
    (["--executor", "ray", "-o", "ray_adress=h:1"], "flag: unknown setting '--ray-adress'"),
    (["-o", "n_ctx"], "-o n_ctx: expected NAME=VALUE, e.g. -o n_ctx=4096"),
    (["-o", "backend=fake"], "-o backend=fake: backend is a setting, not a backend's or executor's option; give it as --backend"),
])
def test_backend_and_executor_options_are_given_as_dash_o_typed_by_their_models(tmp_path, args, message):
    result = cli("run", "--plugin", "math", *args)
    assert (result.returncode, result.stderr.strip()) == (2, f"error: {message}")
    assert not (tmp_path / "personahub.duckdb").exists()


@pytest.mark.slow
def test_the_ray_executor_declares_its_options_like_any_plugin(tmp_path):
    """ray_address and ray_shards are the ray executor's Options, not Settings: listed by run --help and
    plugins show, shown by config under the executor, given by -o, PERSONAHUB_* or personahub.toml."""
    (tmp_path / "personahub.toml").write_text('ray_shards = "/tmp/shards"\n')
    cfg = json.loads(cli("config", "--json", env={"PERSONAHUB_EXECUTOR": "ray", "PERSONAHUB_RAY_ADDRESS": "h:6379"},
                         check=True).stdout)
    assert "ray_address" not in cfg and "ray_shards" not in cfg
    assert cfg["executor_options"] == {"ray_address": {"value": "h:6379", "from": "env PERSONAHUB_RAY_ADDRESS"},
                                       "ray_shards": {"value": "/tmp/shards", "from": "personahub.toml"}}
    assert json.loads(cli("config", "--json", check=True).stdout)["executor_options"] == {}  # local has none
    shown = json.loads(cli("plugins", "show", "ray", "--json", check=True).stdout)
    assert [o["flag"] for o in shown["options"]] == ["-o ray_address=", "-o ray_shards="]
    help_text = cli("run", "--help", check=True).stdout
    assert "-o ray_address=" in help_text and "-o n_ctx=" in help_text and "-o base_url=" in help_text


def test_a_runs_memory_limit_holds_through_the_blocks_that_tune_duckdb(tmp_path):
    def limit(store):
        return store.scalar("SELECT current_setting('memory_limit')")

    with Store(tmp_path / "s.duckdb") as store:
        store.limit_memory("300MB")
        ours = limit(store)
        with store.tuned(memory_limit="256MB"):  # as ingest does inside the main job's bootstrap
            assert limit(store) != ours
        assert limit(store) == ours == "286.1 MiB"


@pytest.mark.parametrize("userinfo, query", [("user:hunter2@", ""), ("user:p@ss-hunter2@", "?api-key=hunter2-key")])
@pytest.mark.slow
def test_credentials_in_the_base_url_are_masked_in_config_runs_and_errors(tmp_path, personas_file, userinfo, query):
    env = {"PERSONAHUB_BASE_URL": f"http://{userinfo}127.0.0.1:1/v1{query}", "PERSONAHUB_API_KEY": "sk-abcdef123456"}
    shown = cli("config", "--json", env={**env, "PERSONAHUB_BACKEND": "openai"}, check=True).stdout
    assert "hunter2" not in shown and "sk-abcdef123456" not in shown and "http://***@127.0.0.1:1/v1" in shown
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    with FaultServer(api_key="sk-abcdef123456") as server:  # user:password in the URL must not replace the key
        url = server.url.replace("http://", f"http://{userinfo}") + query
        cli("run", "--plugin", "math", "--backend", "openai", "--base-url", url, "--model", "test-model",
            "--limit", "1", "-q", env={"PERSONAHUB_API_KEY": "sk-abcdef123456"})
    assert server.received  # the calls got past the key check
    failed = cli("run", "--plugin", "math", "--backend", "openai", "--model", "test-model", "--limit", "1", env=env)
    assert failed.returncode == 1 and "cannot reach http://***@127.0.0.1:1/v1" in failed.stderr
    assert "hunter2" not in failed.stderr
    with duckdb.connect("personahub.duckdb", read_only=True) as con:
        settings = [r[0] for r in con.execute("SELECT settings FROM runs WHERE task = 'math'").fetchall()]
    assert settings and all("hunter2" not in s and "sk-abcdef123456" not in s for s in settings)
    assert any("http://***@127.0.0.1" in s for s in settings)


# -- runs and stats tell the truth ---------------------------------------------------------------------------

@pytest.mark.slow
def test_runs_lists_counts_and_stats_splits_generations_by_model(personas_file):
    cli("run", "--plugin", "import", "--input", personas_file, "-q", check=True)
    cli("run", "--plugin", "persona-to-persona", "--backend", "fake", "--hops", "1", "-q", check=True)
    runs = json.loads(cli("runs", "--json", check=True).stdout)
    assert [(r["task"], r["status"], r["items_done"]) for r in runs] == [
        ("persona-to-persona", "done", 6), ("import", "done", 6)]
    stats = json.loads(cli("stats", "--json", check=True).stdout)
    assert stats["generations_by_model"] == {"persona-to-persona": {"fake": {"ok": 6}}}
    assert stats["runs_by_status"] == {"done": 2}
