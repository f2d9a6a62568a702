"""Keeping the plugin surface honest: the hook reference, load-time errors, and the example plugin."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from personahub_core import hookspecs
from personahub_core.hookspecs import hookimpl
from personahub_core.plugins import PluginError, load_plugins
from personahub_core.tasks import Synthesizer

from personahub_core.testing import cli, last_json
from conftest import REPO

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
    assert set(signatures) == {"register_tasks", "register_backends", "register_executors", "register_export_formats",
                               "register_commands",
                               "register_migrations"}
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


@pytest.mark.slow
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
    # parse() gets the whole completion: an answer cut at the token limit is rejected, not stored as a haiku.
    cut = last_json(cli("run", "--plugin", "haiku", "--backend", "fake", "--limit", "1", "--season", "winter", "--json",
                        "-q", env={**env, "PERSONAHUB_FAKE_ANSWER": "snow " * 60}, check=True))
    assert (cut["items_done"], cut["items_rejected"]) == (0, 1)


DOCS = REPO / "docs"


def docs_examples() -> list[str]:
    """Every runnable example in docs/: each recipe file and each plugin folder (one with a pyproject.toml)."""
    recipes = [p.name for p in sorted((DOCS / "recipes").glob("*.toml"))]
    plugins = [p.parent.name for p in sorted(DOCS.glob("*/*/pyproject.toml"))]
    return recipes + plugins


def test_every_docs_example_is_exercised_by_a_test():
    examples = docs_examples()
    assert {"limerick.toml", "interview-question.toml", "personahub-haiku"} <= set(examples)
    here = Path(__file__).name
    tests = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != here)
    tests += Path(__file__).read_text().split("def docs_examples")[0]  # this file's tests above, not this one
    missing = [name for name in examples if name not in tests]
    assert not missing, f"docs examples that no test runs: {missing}"


def test_the_tutorial_shows_the_recipe_as_it_is():
    """The recipe in writing-plugins.md is the file in docs/recipes/, comments aside."""
    page = (DOCS / "plugins" / "writing-plugins.md").read_text()
    shown = page.split("```toml\n", 1)[1].split("```", 1)[0]
    recipe = (DOCS / "recipes" / "limerick.toml").read_text()
    assert [line for line in recipe.splitlines() if not line.startswith("#")] == shown.rstrip("\n").splitlines()


@pytest.mark.slow
def test_run_help_lists_the_tasks_options_after_the_common_flags():
    wide = {"COLUMNS": "200"}  # one line per option
    result = cli("run", "--plugin", "math", "--help", env=wide, check=True)
    common, _, own = result.stdout.partition("Options of task 'math' (synthesizer), after the common ones")
    assert "--batch-size" in common and "--backend" in common and own, result.stdout
    lines = {line.split()[1]: line for line in own.splitlines() if line.startswith("│ --")}
    assert list(lines) == ["--mode", "--topic", "--difficulty", "--with-solution"]
    assert lines["--topic"].split()[2] == "text" and 'lets the persona decide [default: "any"]' in lines["--topic"]
    assert "any | grade school | high school | competition | olympiad  level of the problem" in lines["--difficulty"]
    assert "also solve each problem and store solution and final_answer [default: false]" in lines["--with-solution"]

    recipe = cli("run", "--plugin", DOCS / "recipes" / "limerick.toml", "--help", env=wide, check=True).stdout
    assert "--subject" in recipe and 'what the limerick is about [default: "their working day"]' in recipe
    unknown = cli("run", "--plugin", "nope", "--help")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown task 'nope'") and not unknown.stdout
    assert "personahub run --plugin TASK --help" in cli("run", "--help", check=True).stdout


@pytest.mark.slow
def test_plugins_show_prints_a_task():
    info = json.loads(cli("plugins", "show", "math", "--json", check=True).stdout)
    assert info["name"] == "math" and info["kind"] == "synthesizer" and info["plugin"] == "personahub-math"
    assert info["description"].startswith("math problems")
    topic = next(o for o in info["options"] if o["flag"] == "--topic")
    assert topic == {"flag": "--topic", "type": "text", "default": "any", "required": False,
                     "help": "area of mathematics in free text, e.g. geometry, probability, finance; 'any' lets the persona decide"}
    text = cli("plugins", "show", "math", check=True).stdout
    assert text.startswith("math (synthesizer, from personahub-math)\nmath problems") and "--with-solution" in text

    recipe = json.loads(cli("plugins", "show", DOCS / "recipes" / "interview-question.toml", "--json", check=True).stdout)
    assert recipe["plugin"] == f"recipe {DOCS / 'recipes' / 'interview-question.toml'}"
    assert [o["flag"] for o in recipe["options"]] == ["--mode"]
    assert cli("plugins", "show", "nope").returncode == 2
    assert cli("plugins", "--json", check=True).stdout.lstrip().startswith("[")


def complete(words: str) -> list[str]:
    """What the completion script typer installs asks for on <TAB>: click's protocol, no shell detection."""
    env = {"_PERSONAHUB_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    return cli(env=env, check=True).stdout.split()


@pytest.mark.slow
def test_shell_completion_offers_commands_and_the_names_plugins_registered():
    assert "--install-completion" in cli("--help", check=True).stdout
    assert complete("personahub ru") == ["run", "runs"]
    assert complete("personahub run --plugin m") == ["math", "minhash"]
    assert complete("personahub plugins show n") == ["npc"]
    assert complete("personahub run --backend ") == ["fake", "llama-cpp", "openai"]
    assert complete("personahub run --executor ") == ["local", "ray"]


def test_the_command_line_starts_without_the_model_libraries():
    """Importing the CLI and loading the plugins (what `personahub --help` does) imports no llama.cpp."""
    code = ("import sys, json; import personahub_core.cli; from personahub_core.plugins import get_registry; "
            "registry = get_registry(); assert 'llama-cpp' in registry.backends; "
            "print(json.dumps(sorted(m for m in ('llama_cpp', 'ray') if m in sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == []


COMMAND_IMPORTS = """
import atexit, json, sys
from personahub_core.cli import main
watched = ("llama_cpp", "aiohttp", "ray")
atexit.register(lambda: open("imported.json", "w").write(json.dumps(sorted(m for m in watched if m in sys.modules))))
sys.argv = ["personahub", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("args, loaded", [
    (["--help"], []),
    (["stats"], []),
    # config shows the chosen backend's options and checks the file's keys against every installed
    # backend's: it imports their modules (the HTTP client's imports aiohttp), never llama.cpp or Ray.
    (["config"], ["aiohttp"]),
])
def test_commands_that_run_no_model_import_no_model_library(tmp_path, args, loaded):
    subprocess.run([sys.executable, "-c", COMMAND_IMPORTS, *args], capture_output=True, text=True, timeout=120)
    assert json.loads((tmp_path / "imported.json").read_text()) == loaded


@pytest.mark.model
@pytest.mark.slow
def test_llama_cpp_says_once_when_it_decodes_fewer_sequences_than_asked():
    """--batch-size above llama.cpp's sequence limit, and a context too small for the batch: one note each."""
    from personahub_core.backends.base import Prompt
    from personahub_core.backends.llama_cpp import LlamaCppBackend
    from personahub_core.settings import Settings

    notes: list[str] = []
    backend = LlamaCppBackend(Settings(batch_size=400, n_ctx=256))
    backend.on_note = notes.append
    # ~90 prompt tokens and 20 answer tokens each, no shared head: two fit in 256 cells, the third waits.
    text = "The quick brown fox jumps over the lazy dog. " * 8
    prompts = [Prompt(completion=f"Note {i}. {text}", max_tokens=20, temperature=0.0, seed=i) for i in range(3)]
    try:
        for _ in range(2):
            assert len(list(backend.generate(prompts))) == 3
    finally:
        backend.close()
    assert len(notes) == 2, notes
    assert re.fullmatch(r"llama-cpp: --batch-size 400 lowered to (\d+): llama\.cpp decodes at most \d+ sequences in one "
                        r"context, one of which holds the shared prompt prefix", notes[0])
    assert re.fullmatch(r"llama-cpp: decoded at most [12] sequences together, not --batch-size 400: their prompts and "
                        r"answers fill the \d+-token context \(raise --n-ctx for more\)", notes[1])
