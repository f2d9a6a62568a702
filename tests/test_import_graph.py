"""The core's layering: no import circle between its modules, and every module imports on its own.

Every import counts: at module level, inside a function (it runs when called) and under
``if TYPE_CHECKING:`` (a type checker follows it), so the layers are layers for a reader and a type
checker too, not only for the interpreter.
"""

from __future__ import annotations

import pytest

import ast
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import personahub_core

CORE = Path(personahub_core.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def core_imports(name: str, path: Path) -> set[str]:
    """The core modules that ``name`` imports anywhere: at the top, in a function, for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` imports the module x when there is one, else a name from the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_finder_sees_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_reads_relative_lazy_and_type_checking_imports():
    graph = {name: core_imports(name, path) for name, path in MODULES.items()}
    assert "personahub_core.backends.base" in graph["personahub_core.backends.factory"]  # from .base import
    assert "personahub_core.settings" in graph["personahub_core.backends.factory"]  # from ..settings import
    assert "personahub_core.store" in graph["personahub_core.tasks"]  # only under TYPE_CHECKING
    assert "personahub_core.backends.factory" in graph["personahub_core.runner"]  # inside a function


def test_no_import_circle_between_core_modules():
    graph = {name: core_imports(name, path) for name, path in MODULES.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


IMPORT_EACH = r'''
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.startswith("personahub")]:  # the core's and plugins' modules
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed[name] = traceback.format_exc(limit=-3)
print(json.dumps(failed))
'''


@pytest.mark.slow
def test_every_core_module_imports_on_its_own():
    """Each module first, in a fresh set of core modules: an order-dependent import (a circle that only
    works when another module happened to be imported first) fails here."""
    result = subprocess.run([sys.executable, "-c", IMPORT_EACH, json.dumps(sorted(MODULES))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    failed = json.loads(result.stdout)
    assert failed == {}, "\n".join(f"{name}:\n{trace}" for name, trace in failed.items())


# The commands resolve tasks, backends and executors from the registry and hand them down (the test kit
# runs and exports tasks as the commands do; the Python API is the commands for a notebook).
COMMANDS = {"personahub_core.plugins", "personahub_core.cli", "personahub_core.api", "personahub_core.dedup_command",
            "personahub_core.diversity_command", "personahub_core.plugin_migrations", "personahub_core.testing",
            "personahub_core.python_api"}


def test_only_the_commands_look_in_the_registry():
    users = {name for name, path in MODULES.items() if "get_registry" in path.read_text(encoding="utf-8")}
    assert users <= COMMANDS, f"below the commands, these reach up into the registry: {sorted(users - COMMANDS)}"


HELP_IMPORTS = r'''
import json, sys
sys.argv = ["personahub", "--help"]
from personahub_core.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
'''


def test_the_top_level_help_imports_no_plugin_and_no_numpy():
    """``personahub --help`` lists the plugins' commands by the names their packages declare, without
    importing a plugin module (or numpy, which dedup and embeddings need)."""
    result = subprocess.run([sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    plugins = {ep.value.partition(":")[0].split(".")[0] for ep in metadata.entry_points(group="personahub")}
    assert plugins and not plugins & {m.split(".")[0] for m in loaded}
    assert "numpy" not in loaded and "personahub_core.default_plugins" not in loaded
    assert "Usage: personahub" in result.stdout
