"""Nothing a plugin author can use is added without a test: every hook, every public name of the
modules plugins import, and every runnable example in docs/ is used by at least one test."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from conftest import REPO

# The modules a plugin imports from (docs/plugins/writing-plugins.md and hooks.md name them).
PLUGIN_FACING = [
    "personahub_core.tasks",
    "personahub_core.calls",
    "personahub_core.prompting",
    "personahub_core.testing",
    "personahub_core.hookspecs",
    "personahub_core.backends.base",
    "personahub_core.executors",
    "personahub_core.dedup",
]
HERE = Path(__file__).resolve()


def all_test_text() -> str:
    """Every test file of the core and of each plugin, this one left out."""
    files = [*REPO.glob("tests/test_*.py"), *REPO.glob("plugins/*/tests/test_*.py")]
    return "\n".join(p.read_text() for p in files if p.resolve() != HERE)


def exercised_text() -> str:
    """What the suite runs: the tests, and the code of the plugins and docs examples they run."""
    code = [*REPO.glob("plugins/*/personahub_*/**/*.py"), *REPO.glob("docs/plugins/*/personahub_*/**/*.py")]
    return all_test_text() + "\n".join(p.read_text() for p in code)


def public_names(module_name: str) -> list[str]:
    """Names the module defines itself (not imports), and the public methods its classes define."""
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(module.__file__).read_text())
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names.append(node.name)
            if isinstance(node, ast.ClassDef):
                names += [f"{node.name}.{m.name}" for m in node.body
                          if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")]
    return names


def is_used(name: str, text: str) -> bool:
    return re.search(rf"\b{re.escape(name.rpartition('.')[2])}\b", text) is not None


def test_every_plugin_facing_name_is_used_by_a_test():
    """By a test file: a bundled plugin calling a name shows it runs, not that its behaviour is checked."""
    text = all_test_text()
    missing = [f"{module}.{name}" for module in PLUGIN_FACING for name in public_names(module) if not is_used(name, text)]
    assert not missing, f"plugin-facing names no test uses: {missing}"


def test_every_hook_is_implemented_by_a_tested_plugin():
    """A plugin in a test file, a bundled plugin or the tutorial plugin implements each hook."""
    hooks = [n for n in public_names("personahub_core.hookspecs") if n.startswith("register_")]
    text = exercised_text()
    missing = [hook for hook in hooks if not re.search(rf"def {hook}\(", text)]
    assert not missing, f"hooks no tested plugin implements: {missing}"


def test_the_meta_tests_catch_an_untested_name(tmp_path):
    """The check above is not vacuous: a name nothing mentions is reported."""
    assert not is_used("a_name_no_test_mentions", all_test_text())
    assert is_used("Synthesizer.parse", "task.parse(completion, persona)")
