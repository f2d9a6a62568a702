"""Keeping the plugin surface honest: the hook reference, load-time errors, and the example plugin."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from personahub_core import hookspecs
from personahub_core.hookspecs import hookimpl
from personahub_core.plugins import PluginError, load_plugins
from personahub_core.tasks import Synthesizer

from conftest import REPO, cli, last_json

HOOKS_DOC = REPO / "docs" / "plugins" / "hooks.md"


def hook_signatures() -> dict[str, str]:
    tree = ast.parse(Path(hookspecs.__file__).read_text())
    return {
        node.name: f"def {node.name}({ast.unparse(node.args)})" + (f" -> {ast.unparse(node.returns)}" if node.returns else "")
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }


def test_every_hook_is_documented_with_its_exact_signature():
    doc = HOOKS_DOC.read_text()
    signatures = hook_signatures()
    assert set(signatures) == {"register_tasks", "register_backends", "register_executors", "register_commands"}
    for name, signature in signatures.items():
        assert f"## {name}" in doc, f"{name} has no section in hooks.md"
        assert signature in doc, f"hooks.md shows a different signature for {name}: expected {signature}"


class Dup(Synthesizer):
    name = "text-to-persona"  # already taken by the installed plugin


def test_duplicate_task_name_is_a_load_time_error():
    class P:
        @hookimpl
        def register_tasks(self, register):
            register(Dup)

    with pytest.raises(PluginError, match="registers 'text-to-persona', already registered"):
        load_plugins(extra=[P()])


def test_misspelt_hook_is_a_load_time_error():
    class Misspelt:
        @hookimpl
        def register_task(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        load_plugins(extra=[Misspelt()])


def test_registering_a_non_task_is_an_error():
    class P:
        @hookimpl
        def register_tasks(self, register):
            register(dict)

    with pytest.raises(PluginError):
        load_plugins(extra=[P()])


def test_example_plugin_installs_is_discovered_and_runs(tmp_path, personas_file):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO / "docs" / "plugins" / "personahub-haiku")],
        check=True, capture_output=True, text=True,
    )
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    plugins = json.loads(cli("plugins", "--json", env=env, check=True).stdout)
    haiku = next(p for p in plugins if p["name"] == "personahub-haiku")
    assert haiku["tasks"] == [{"kind": "synthesizer", "name": "haiku"}]

    cli("run", "--plugin", "import", "--input", personas_file, "-q", env=env, check=True)
    answer = "Lines of code at dawn / coffee cools beside the logs / the build is green now"
    summary = last_json(cli("run", "--plugin", "haiku", "--backend", "fake", "--limit", "2", "--season", "winter",
                            "--json", "-q", env={**env, "PERSONAHUB_FAKE_ANSWER": answer}, check=True))
    assert summary["items_done"] == 2
    cli("export", "haiku", "--format", "jsonl", "--out", tmp_path / "haiku.jsonl", env=env, check=True)
    rows = [json.loads(line) for line in (tmp_path / "haiku.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert rows[0]["synthesized text"].splitlines() == ["Lines of code at dawn", "coffee cools beside the logs", "the build is green now"]
    assert rows[0]["description"] == "haiku" and rows[0]["input persona"]
