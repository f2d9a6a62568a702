"""The store's API for plugins, plugins' own tables (register_migrations), and the chains the core runs
without naming a plugin (the main job's bootstrap, ``personahub dedup``)."""

from __future__ import annotations

import hashlib
import types

import duckdb
import pyarrow as pa
import pytest

from personahub_core import store as store_module
from personahub_core.hookspecs import hookimpl
from personahub_core.plugin_migrations import migrate_plugins
from personahub_core.plugins import PluginError
from personahub_core.store import Store, StoreError
from personahub_core.testing import cli, plugins_registered, run_task, write_jsonl

DB = "personahub.duckdb"


def personas(store: Store, texts: list[str], origin: str = "import") -> None:
    store.add_personas(pa.table({"id": [f"p{k}" for k in range(len(texts))], "persona": texts,
                                 "origin": [origin] * len(texts)}))


# -- selecting and marking ------------------------------------------------------------------------
def test_select_and_stream_personas_filter_by_checks_marks_where_and_ids(tmp_path):
    with Store(tmp_path / DB) as store:
        personas(store, ["a nurse", "a pilot", "a nurse who flies", "a baker"])
        store.mark_personas("m", "run-1", ["p0", "p1"], [{"persona_id": "p1", "duplicate_of": "p0", "reason": "same"}])
        assert store.select_personas().column("id").to_pylist() == ["p0", "p2", "p3"]
        assert store.select_personas(include_marked=True).num_rows == 4
        assert store.select_personas(unchecked_by="m").column("id").to_pylist() == ["p2", "p3"]
        assert store.select_personas(checked_by="m").column("id").to_pylist() == ["p0"]
        assert store.select_personas(where=["persona~nurse"], limit=1).column("id").to_pylist() == ["p0"]
        wanted = store.select_personas(ids=pa.array(["p3", "nobody", "p0"]), columns=("persona",))
        assert wanted.to_pylist() == [{"persona": "a baker", "position": 0}, {"persona": "a nurse", "position": 2}]
        count, batches = store.stream_personas(unchecked_by="m", batch_rows=1)
        assert count == 2 and [b.num_rows for b in batches] == [1, 1]
        assert store.marked_count("m") == 1 and store.marked_count() == 1
        store.forget_method("m")
        assert store.select_personas(unchecked_by="m").num_rows == 4 and store.marked_count() == 0
        with pytest.raises(ValueError, match="no column"):
            store.select_personas(columns=("persona; DROP TABLE personas",))


def test_a_marks_table_may_leave_out_the_columns_a_method_does_not_know(tmp_path):
    with Store(tmp_path / DB) as store:
        personas(store, ["a", "b"])
        store.mark_personas("quality", "r", pa.array(["p0", "p1"]), pa.table({"persona_id": ["p1"], "reason": ["short"]}))
        assert store.query("SELECT persona_id, method, duplicate_of, reason, run_id FROM dedup_marks") == [
            ("p1", "quality", None, "short", "r")]


def test_documents_are_counted_and_selected_in_ingest_order(tmp_path):
    from personahub_core.ingest import ingest_paths

    write_jsonl(tmp_path / "docs.jsonl", [{"text": "second text", "id": "b"}, {"text": "first text", "id": "a"}])
    with Store(tmp_path / DB) as store:
        assert store.document_count() == 0
        ingest_paths(store, [tmp_path / "docs.jsonl"], quiet=True)
        assert store.document_count() == 2
        assert store.select_documents(("text",)).column("text").to_pylist() == ["second text", "first text"]
        with pytest.raises(ValueError, match="no column"):
            store.select_documents(("nope",))


def test_add_personas_keeps_the_first_of_an_id_skips_stored_ones_and_honours_the_limit(tmp_path):
    with Store(tmp_path / DB) as store:
        rows = pa.table({"id": ["x", "y", "x", "z"], "persona": ["first", "second", "again", "third"],
                         "origin": ["import"] * 4})
        assert store.add_personas(rows, limit=2) == (3, 2)
        assert store.query("SELECT id, persona FROM personas ORDER BY seq") == [("x", "first"), ("y", "second")]
        assert store.add_personas(rows) == (1, 1)  # only z is new
        with pytest.raises(ValueError, match="origin"):
            store.add_personas(pa.table({"id": ["w"], "persona": ["w"]}))


def test_a_plugins_own_table_is_read_appended_and_deleted_in_sets(tmp_path):
    with Store(tmp_path / DB) as store:
        store.migrate_plugin("mine", ["CREATE TABLE IF NOT EXISTS my_scores (persona_id VARCHAR, score DOUBLE, model VARCHAR)"])
        personas(store, ["a", "b", "c"])
        store.append("my_scores", pa.table({"persona_id": ["p2", "p0", "p1"], "score": [0.2, 0.0, 0.1]}),
                     constants={"model": "m1"})
        store.mark_personas("mine", "r", ["p0", "p2"], [{"persona_id": "p1", "reason": "bad"}])
        read = store.read("my_scores", ["persona_id", "score"], equals={"model": "m1"},
                          of_personas={"checked_by": "mine"})
        assert read.to_pylist() == [{"persona_id": "p0", "score": 0.0}, {"persona_id": "p2", "score": 0.2}]
        batches = list(store.read("my_scores", ["persona_id"], batch_rows=2))
        assert sum(b.num_rows for b in batches) == 3
        store.delete("my_scores", unchecked_by="mine")  # p1: marked, never checked
        store.delete("my_scores", persona_ids=pa.array(["p2"]))
        assert store.query("SELECT persona_id, model FROM my_scores") == [("p0", "m1")]
        with pytest.raises(ValueError, match="plain SQL name"):
            store.read("my_scores; DROP TABLE personas", ["persona_id"])


def test_a_plugins_table_is_filtered_by_values_never_by_sql_text(tmp_path):
    with Store(tmp_path / DB) as store:
        store.migrate_plugin("mine", ["CREATE TABLE IF NOT EXISTS my_notes (persona_id VARCHAR, n INTEGER, tag VARCHAR)"])
        store.append("my_notes", pa.table({"persona_id": ["a", "b", "c"], "n": [1, 2, 1], "tag": ["x", None, "y"]}))
        assert store.read("my_notes", ["persona_id"], equals={"n": 1, "tag": "y"}).column(0).to_pylist() == ["c"]
        assert store.read("my_notes", ["persona_id"], equals={"tag": None}).column(0).to_pylist() == ["b"]
        assert store.read("my_notes", ["persona_id"], equals={"tag": "x' OR TRUE --"}).num_rows == 0  # a value, not SQL
        store.delete("my_notes", equals={"n": 1})
        assert store.query("SELECT persona_id FROM my_notes") == [("b",)]
        with pytest.raises(ValueError, match="plain SQL name"):
            store.read("my_notes", ["persona_id"], equals={"n = n OR TRUE": 1})


def test_add_personas_can_make_ids_as_work_keys_of_columns(tmp_path):
    from personahub_core.tasks import work_key

    rows = pa.table({"persona": ["a nurse", "ein Bäcker \"Max\""], "given": [None, "id-7"], "origin": ["import"] * 2})
    with Store(tmp_path / DB) as store:
        assert store.add_personas(rows, id_from=("given", "persona"), id_prefix="imp-") == (2, 2)
        assert [r[0] for r in store.query("SELECT id FROM personas ORDER BY seq")] == [
            "imp-" + work_key("a nurse"), "imp-" + work_key("id-7", 'ein Bäcker "Max"')]


def test_persona_vectors_are_stored_and_read_for_kept_personas_only(tmp_path):
    import numpy as np

    with Store(tmp_path / DB) as store:
        personas(store, ["a", "b", "c"])
        assert store.personas_without_vectors("m").column("id").to_pylist() == ["p0", "p1", "p2"]
        assert store.personas_without_vectors("m", ids=pa.array(["p2"])).column("id").to_pylist() == ["p2"]
        store.add_persona_vectors("m", ["p0", "p2"], np.array([[1, 0], [0, 1]], dtype=np.float32))
        store.mark_personas("d", "r", ["p0"], [{"persona_id": "p0", "reason": "dup"}])
        assert store.personas_without_vectors("m").column("id").to_pylist() == ["p1"]  # p0 is marked
        kept = store.persona_vectors("m")
        assert kept.column("id").to_pylist() == ["p2"] and kept.column("dim").to_pylist() == [2]
        assert np.frombuffer(kept.column("vector")[0].as_py(), "<f4").tolist() == [0.0, 1.0]
        assert store.persona_vectors("other", columns=("seq",)).num_rows == 0


def test_a_task_adds_what_it_resolved_to_its_runs_options(tmp_path):
    with Store(tmp_path / DB) as store:
        store.start_run("r1", "t", {}, {"a": 1})
        store.amend_run_options("r1", {"threshold": 0.8})
        assert store.runs()[0]["options"] == '{"a":1,"threshold":0.8}'


def test_tuned_settings_are_reset_and_unknown_ones_skipped(tmp_path):
    with Store(tmp_path / DB) as store:
        before = store.scalar("SELECT current_setting('memory_limit')")
        with store.tuned(memory_limit="123MB", no_such_setting="x"):
            assert store.scalar("SELECT current_setting('memory_limit')") != before
        assert store.scalar("SELECT current_setting('memory_limit')") == before


# -- plugins' own tables ---------------------------------------------------------------------------
def _memory_limit(store: Store) -> float:
    return store.scalar("SELECT current_setting('memory_limit')")


def _cached_rows(store: Store, n: int) -> None:
    store.con.execute("INSERT INTO llm_cache SELECT md5('k' || i)[:24], 'an answer', 1, 1, 'stop' FROM range(?) t(i)", [n])


def test_the_automatic_memory_cap_grows_with_the_keyed_rows_and_a_given_one_stays(tmp_path):
    from personahub_core.store.connection import BLOCK_ROOM, INDEX_BYTES_PER_ROW

    with Store(tmp_path / DB) as store:
        store.limit_memory(None)
        first = _memory_limit(store)
        _cached_rows(store, 400_000)
        store.cache_put([("new", "text", 1, 1, "stop")])  # a write makes room first
        grown = _memory_limit(store)
        assert first == "64.0 MiB"
        expected_mib = (BLOCK_ROOM + INDEX_BYTES_PER_ROW * 400_000) / 2**20
        assert grown.endswith("MiB") and abs(float(grown.split()[0]) - expected_mib) < 1, (grown, expected_mib)
        store.limit_memory("1GB")
        store.cache_put([("newer", "text", 1, 1, "stop")])
        assert _memory_limit(store) == "953.6 MiB"  # DuckDB's way of saying 1GB: what was given stays


def test_a_large_batch_of_personas_goes_into_a_new_store_under_the_automatic_cap(tmp_path):
    """An import of 150,000 personas: under the automatic cap of an empty store (64 MiB), where one
    INSERT ... ON CONFLICT of them ran out of memory."""
    n = 150_000
    rows = pa.table({"persona": [f"a nurse who counts {k} sheep, " + "and more " * 20 for k in range(n)],
                     "given_id": pa.nulls(n, pa.string()), "origin": ["import"] * n})
    with Store(tmp_path / DB) as store:
        store.limit_memory(None)
        assert store.add_personas(rows, id_from=("given_id", "persona"), id_prefix="imp-") == (n, n)
        assert store.add_personas(rows, id_from=("given_id", "persona"), id_prefix="imp-") == (0, 0)
        assert store.query("SELECT min(persona), count(*) FROM personas WHERE seq = (SELECT min(seq) FROM personas)") \
            == [(rows.column("persona")[0].as_py(), 1)]


@pytest.mark.slow
def test_a_store_whose_key_index_outgrows_a_fixed_cap_still_takes_writes(tmp_path):
    """DuckDB loads a written table's key index whole and cannot evict it: with 2.5 million cached
    completions (~170 MB of index) a fixed 128 MB cap fails the next write; the automatic one does not."""
    with Store(tmp_path / DB) as store:
        _cached_rows(store, 2_500_000)
    # Keys spread like work keys, so the batch touches the whole index (one row alone loads a little).
    batch = [(hashlib.sha256(str(i).encode()).hexdigest()[:24], "text", 1, 1, "stop") for i in range(1000)]
    with Store(tmp_path / DB) as store:
        store.limit_memory("128MB")
        with pytest.raises(duckdb.Error, match="could not allocate"):
            store.cache_put(batch)
    with Store(tmp_path / DB) as store:
        store.limit_memory(None)
        store.cache_put(batch)
        assert store.cache_get([batch[7][0], "missing"]) == {batch[7][0]: ("text", 1, 1, "stop")}


def test_plugin_migrations_run_in_order_once_each_and_a_grown_list_runs_only_the_new_ones(tmp_path):
    first = ["CREATE TABLE IF NOT EXISTS notes (persona_id VARCHAR)", "ALTER TABLE notes ADD COLUMN n INTEGER"]
    with Store(tmp_path / DB) as store:
        assert store.migrate_plugin("notes-plugin", first) == 2
        assert store.migrate_plugin("notes-plugin", first) == 0  # an ALTER run twice would fail
        assert store.migrate_plugin("notes-plugin", first + ["ALTER TABLE notes ADD COLUMN m INTEGER"]) == 1
        assert [r[0] for r in store.query("SELECT column_name FROM (DESCRIBE notes)")] == ["persona_id", "n", "m"]
        assert store.query("SELECT owner, version FROM plugin_migrations ORDER BY version") == [
            ("notes-plugin", 1), ("notes-plugin", 2), ("notes-plugin", 3)]


def test_a_failing_migration_leaves_nothing_half_done(tmp_path):
    with Store(tmp_path / DB) as store:
        with pytest.raises(StoreError, match="migration 2 of plugin 'broken' failed: Parser Error"):
            store.migrate_plugin("broken", ["CREATE TABLE ok_table (a INTEGER)", "CREATE TABLE oops ("])
        assert store.query("SELECT version FROM plugin_migrations WHERE owner = 'broken'") == [(1,)]
        assert store.migrate_plugin("broken", ["CREATE TABLE ok_table (a INTEGER)", "CREATE TABLE fixed (a INTEGER)"]) == 1


def test_two_plugins_claiming_one_owner_is_a_plugin_error(tmp_path):
    one = types.SimpleNamespace(register_migrations=hookimpl(lambda register: register("minhash", ["SELECT 1"])))
    with plugins_registered(one) as registry, Store(tmp_path / DB) as store:
        with pytest.raises(PluginError, match="'minhash', already registered"):
            migrate_plugins(store, registry)


def old_store(path) -> None:
    """A store as made before plugins owned their tables: the core's migrations of then, one of which
    made minhash_signatures."""
    moved_at = next(k for k, sql in enumerate(store_module.MIGRATIONS) if "CREATE TABLE plugin_migrations" in sql)
    before_move = store_module.MIGRATIONS[:moved_at]
    before_move[1] = before_move[1].replace("CREATE TABLE embeddings", """CREATE TABLE minhash_signatures (
        persona_id VARCHAR NOT NULL, num_perm INTEGER NOT NULL, ngram INTEGER NOT NULL, signature BLOB NOT NULL);
        CREATE TABLE embeddings""")
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    for version, sql in enumerate(before_move, start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
    con.close()


def test_a_store_made_before_the_move_opens_and_minhash_runs_on_it(tmp_path, personas_file):
    old_store(tmp_path / DB)
    run_task("import", ["--input", str(personas_file)])
    first = run_task("minhash")
    assert first["items_done"] > 0
    with Store(tmp_path / DB) as store:
        signed = store.count("minhash_signatures")
        assert signed == first["items_done"]
        # Every installed plugin's tables are made before any task runs (embedding's calibrations too).
        assert ("minhash", 1) in store.query("SELECT owner, version FROM plugin_migrations")
    write_jsonl(tmp_path / "more.jsonl", [{"persona": "a harbour pilot who studies tides and writes about ships"}])
    assert run_task("import", ["--input", str(tmp_path / "more.jsonl")])["items_done"] == 1
    assert run_task("minhash")["items_done"] == 1  # the old signatures are used, only the new one is hashed
    with Store(tmp_path / DB) as store:
        assert store.count("minhash_signatures") == signed + 1


@pytest.mark.slow
def test_a_fresh_store_gets_a_plugins_tables_only_when_the_plugin_is_installed(personas_file):
    env = {"PERSONAHUB_LOAD_PLUGINS": "import,quality"}
    cli("run", "--plugin", "import", "--input", personas_file, "-q", env=env, check=True)
    cli("dedup", "-q", env=env, check=True)
    tables = lambda: {r[0] for r in Store(DB, read_only=True).query("SELECT table_name FROM information_schema.tables")}
    assert "minhash_signatures" not in tables() and "dedup_marks" in tables()
    cli("dedup", "--skip", "embedding", "-q", check=True)
    assert "minhash_signatures" in tables()


# -- the chains: declared by the tasks, named by none ------------------------------------------------
@pytest.mark.slow
def test_a_synthesizer_on_an_empty_store_without_a_persona_source_says_what_is_missing():
    result = cli("run", "--plugin", "math", "--backend", "fake", env={"PERSONAHUB_LOAD_PLUGINS": "math,minhash"})
    expected = ["error: the store has no personas and no installed task makes them from text: install a persona "
                "source plugin, or import personas with: personahub run --plugin import --input FILE"]
    assert result.returncode == 2 and result.stderr.strip().splitlines() == expected
    plan = cli("run", "--plugin", "math", "--dry-run", env={"PERSONAHUB_LOAD_PLUGINS": "math"})
    assert plan.returncode == 2 and plan.stderr.strip().splitlines() == expected


@pytest.mark.slow
def test_the_bootstrap_runs_the_declared_steps_that_are_installed():
    """Without minhash the bootstrap still makes personas, and says which steps it ran."""
    result = cli("run", "--plugin", "math", "--backend", "fake", "--limit", "1",
                 env={"PERSONAHUB_LOAD_PLUGINS": "math,text-to-persona"})
    assert "(text-to-persona)" in result.stderr and "minhash" not in result.stderr
    with Store(DB, read_only=True) as store:  # the fake model's math answers may be rejected; the personas stand
        assert store.persona_count() > 0
        assert [r[0] for r in store.query("SELECT DISTINCT task FROM runs ORDER BY 1")] == ["math", "text-to-persona"]


def test_dedup_without_a_deduplicator_and_skip_of_an_uninstalled_step_are_one_line_errors(personas_file):
    none = cli("dedup", env={"PERSONAHUB_LOAD_PLUGINS": "import"})
    assert none.returncode == 2 and none.stderr.strip().splitlines() == [
        "error: no installed task is a step of personahub dedup: install a deduplicator plugin"]
    skip = cli("dedup", "--skip", "embedding", env={"PERSONAHUB_LOAD_PLUGINS": "quality,minhash"})
    assert skip.returncode == 2 and "--skip embedding: expected one of quality, minhash" in skip.stderr


def test_every_store_method_for_plugins_is_documented_and_tested():
    from conftest import REPO

    doc = (REPO / "docs" / "plugins" / "store-api.md").read_text()
    tests = (REPO / "tests" / "test_store_api.py").read_text().split("def test_every_store_method")[0]
    for name in store_module.PLUGIN_API:
        assert callable(getattr(Store, name, None)), f"Store has no method {name}"
        assert f"### {name}\n" in doc, f"store-api.md has no section for {name}"
        assert f".{name}(" in tests, f"no test in test_store_api.py calls {name}"
    documented = {line[4:] for line in doc.splitlines() if line.startswith("### ")}
    assert documented == set(store_module.PLUGIN_API), "store-api.md and PLUGIN_API list different methods"
