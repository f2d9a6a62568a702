"""The plugin boundary: a task's ``ctx.store`` is a ``PluginStore`` with the documented methods
(docs/plugins/store-api.md) and nothing else, and no plugin's code reaches past it."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import REPO
from personahub_core.hookspecs import hookimpl
from personahub_core.store import PLUGIN_API, PluginStore, Store
from personahub_core.tasks import Task
from personahub_core.testing import plugins_registered, run_task

# Never in a plugin: the connection, raw SQL, the core's own handle on the whole store.
ALWAYS_FORBIDDEN = {"con", "query", "query_dicts", "scalar", "core_store", "_store"}
# Store attributes the plugin API does not offer (on anything a plugin calls a store).
NOT_FOR_PLUGINS = {n for n in dir(Store) if not n.startswith("__")} - set(PLUGIN_API)


def plugin_sources() -> list[Path]:
    return sorted([*REPO.glob("plugins/*/personahub_*/**/*.py"), *REPO.glob("docs/plugins/*/personahub_*/**/*.py")])


def reached_past(path: Path) -> list[str]:
    """``file:line: .name`` for each use of a forbidden attribute: one of ``ALWAYS_FORBIDDEN`` on
    anything, or a Store attribute outside the plugin API on a name ending in ``store``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        if node.attr in ALWAYS_FORBIDDEN or (owner.endswith("store") and node.attr in NOT_FOR_PLUGINS):
            found.append((node.lineno, node.col_offset, node.attr))
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    return [f"{name}:{line}: .{attr}" for line, _, attr in sorted(found)]


def test_no_plugin_reaches_past_the_plugin_store():
    sources = plugin_sources()
    assert len(sources) >= 13  # every bundled plugin and the tutorial's example
    assert [hit for path in sources for hit in reached_past(path)] == []


def test_the_static_check_finds_a_plugin_that_reaches_past(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("def run(self, ctx):\n"
                   "    ctx.store.con.execute('DELETE FROM personas')\n"
                   "    store = ctx.store\n"
                   "    store.write_generations([], [])\n"
                   "    n = store.persona_count()\n")
    assert [hit.split(": ")[1] for hit in reached_past(bad)] == [".con", ".write_generations"]


def test_the_plugin_store_offers_exactly_the_plugin_api_and_no_connection(tmp_path):
    public = {n for n in dir(PluginStore) if not n.startswith("_")}
    assert public == set(PLUGIN_API)
    with Store(tmp_path / "s.duckdb") as store:
        view = PluginStore(store)
        with pytest.raises(AttributeError):
            view.con
        with pytest.raises(AttributeError):
            view.con = store.con  # no attribute can be added to it either
        view.add_personas(pa.table({"id": ["a"], "persona": ["a nurse"], "origin": ["import"]}))
        assert view.persona_count() == 1 and view.select_personas(columns=("id",)).column("id").to_pylist() == ["a"]


class Peek(Task):
    """Records what it was given as ``ctx.store`` and whether the connection was within reach."""

    name = "peek"
    kind = "deduplicator"
    seen: list = []

    def run(self, ctx) -> None:
        Peek.seen.append((type(ctx.store), hasattr(ctx.store, "con"), ctx.store.persona_count()))


class PeekPlugin:
    @hookimpl
    def register_tasks(self, register):
        register(Peek)


def test_a_running_task_gets_a_plugin_store(personas_store):
    Peek.seen = []
    with plugins_registered(PeekPlugin()):
        run_task("peek", db=personas_store)
    [(kind, has_connection, count)] = Peek.seen
    assert kind is PluginStore and not has_connection and count > 0
