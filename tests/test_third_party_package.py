"""A package from outside the project registers a backend, an executor and a command; each is used
through the real command line, chosen by flag, environment variable and personahub.toml."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from personahub_core.testing import cli, last_json
from conftest import REPO

DIST = "personahub-echo-example"

PACKAGE = '''
"""A third-party PersonaHub plugin: an echo backend, a one-at-a-time executor, a 'shout' command and
a 'lines' export format."""

import typer
from pydantic import BaseModel, Field

from personahub_core.backends.base import Backend, Completion, ModelInfo
from personahub_core.executors import Executor
from personahub_core.export import export_query
from personahub_core.export_formats import ExportFormat
from personahub_core.hookspecs import hookimpl
from personahub_core.driving import drive


class EchoOptions(BaseModel):
    echo_times: int = Field(1, ge=1, description="how many times each answer says the reversed line")


class EchoBackend(Backend):
    name = "echo"
    description = "answers every prompt with its last line, reversed word by word"
    Options = EchoOptions

    def __init__(self, settings):
        self.settings = settings
        self.times = self.options_from(settings).echo_times
        self.said = False

    def info(self):
        return ModelInfo(name="echo", context_length=100_000, has_chat_template=False)

    def generate(self, prompts):
        if not self.said:
            self.said = True
            self.note("echo: answers are the prompt's last line reversed, not a model's")
        for i, prompt in enumerate(prompts):
            line = prompt.completion.rstrip().splitlines()[-1]
            text = " / ".join(["echo says " + " ".join(reversed(line.split()))] * self.times)
            yield i, Completion(text, prompt_tokens=len(prompt.completion.split()), completion_tokens=len(text.split()))

    def embed(self, texts):
        return [[float(len(t)), 1.0] for t in texts]


class OneByOne(Executor):
    name = "one-by-one"

    def execute(self, task, items, ctx):
        items = list(items)
        ctx.note(f"one-by-one: {len(items)} items, one backend call each")
        for item in items:
            yield from drive(task, [item], ctx.backend, self.settings)


@hookimpl
def register_backends(register):
    register(EchoBackend)


@hookimpl
def register_executors(register):
    register(OneByOne)


class Lines(ExportFormat):
    name = "lines"
    description = "one persona per line"
    selects_by_verdict = False

    def write(self, store, what, out_path, *, full, include_all, quiet, tasks, verified, where):
        query = export_query(store, what, full, include_all, tasks)
        personas = [row[0] for row in store.query(f"SELECT persona FROM ({query.sql})", query.params)]
        out_path.write_text("".join(p + "\\n" for p in personas), encoding="utf-8")
        return len(personas)


@hookimpl
def register_export_formats(register):
    register(Lines)


@hookimpl
def register_commands(cli):
    @cli.command("shout")
    def shout(text: str = typer.Argument(...)):
        """Print TEXT in capitals."""
        print(text.upper() + "!")
'''

PYPROJECT = f'''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "0.2.0"
dependencies = ["personahub"]

[project.entry-points.personahub]
echo-example = "personahub_echo_example"

[project.entry-points."personahub.commands"]
shout = "personahub_echo_example"
'''


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=True)


@pytest.fixture
def installed(tmp_path) -> dict:
    """The package, pip-installed into a folder of its own: the environment that puts it on the path.
    The virtualenv itself is never changed, so no other test can see the package."""
    source = tmp_path / "src"
    (source / "personahub_echo_example").mkdir(parents=True)
    (source / "personahub_echo_example" / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (source / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path / "site"
    pip("install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source))
    return {"PYTHONPATH": str(site)}


@pytest.mark.slow
def test_a_package_adds_a_backend_an_executor_and_a_command(installed, tmp_path, personas_file):
    plugins = json.loads(cli("plugins", "--json", env=installed, check=True).stdout)
    assert {"name": DIST, "version": "0.2.0", "tasks": []} in plugins
    listing = cli("plugins", env=installed, check=True).stdout
    assert "echo" in listing and "one-by-one" in listing

    assert cli("shout", "hello there", env=installed, check=True).stdout == "HELLO THERE!\n"
    assert "shout" in cli("--help", env=installed, check=True).stdout

    cli("run", "--plugin", "import", "--input", personas_file, "-q", env=installed, check=True)
    cli("export", "personas", "--format", "lines", "--out", tmp_path / "p.txt", env=installed, check=True)
    stored = json.loads(cli("stats", "--json", env=installed, check=True).stdout)
    assert len((tmp_path / "p.txt").read_text().splitlines()) == stored["personas"] > 0
    verified = cli("export", "personas", "--format", "lines", "--verified", "--out", tmp_path / "v.txt", env=installed)
    assert verified.returncode == 2 and "not supported with --format lines" in verified.stderr
    recipe = REPO / "docs" / "recipes" / "limerick.toml"
    summary = last_json(cli("run", "--plugin", recipe, "--backend", "echo", "--executor", "one-by-one",
                            "--limit", "2", "--json", "-q", env=installed, check=True))
    assert summary["items_done"] == 2
    assert summary["notes"] == ["one-by-one: 2 items, one backend call each",
                                "echo: answers are the prompt's last line reversed, not a model's"]
    cli("export", "limerick", "--format", "jsonl", "--full", "--out", tmp_path / "rows.jsonl", env=installed, check=True)
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["model"] for r in rows] == ["echo", "echo"]
    assert all(r["synthesized text"].startswith("echo says Answer:") for r in rows)

    # The same names from the environment and from personahub.toml; a name nobody registered is a usage error.
    env = {**installed, "PERSONAHUB_BACKEND": "echo", "PERSONAHUB_EXECUTOR": "one-by-one"}
    from_env = last_json(cli("run", "--plugin", recipe, "--limit", "1", "--seed", "1", "--json", "-q", env=env, check=True))
    assert from_env["items_done"] == 1 and from_env["notes"]
    (tmp_path / "personahub.toml").write_text('backend = "echo"\nexecutor = "one-by-one"\n')
    from_file = last_json(cli("run", "--plugin", recipe, "--limit", "1", "--seed", "2", "--json", "-q", env=installed, check=True))
    assert from_file["items_done"] == 1 and from_file["notes"]


@pytest.mark.slow
def test_a_backend_from_a_package_declares_its_own_options(installed, tmp_path, personas_file):
    """EchoBackend's echo_times is set like any setting (flag-less: env or personahub.toml), shown by
    `config` under the backend, validated when the backend is chosen, and used by the backend."""
    (tmp_path / "personahub.toml").write_text('backend = "echo"\necho_times = 2\n')
    cfg = json.loads(cli("config", "--json", env=installed, check=True).stdout)
    assert cfg["backend_options"] == {"echo_times": {"value": 2, "from": "personahub.toml"}}
    env = {**installed, "PERSONAHUB_ECHO_TIMES": "3"}
    assert json.loads(cli("config", "--json", env=env, check=True).stdout)["backend_options"]["echo_times"] == {
        "value": 3, "from": "env PERSONAHUB_ECHO_TIMES"}

    cli("run", "--plugin", "import", "--input", personas_file, "-q", env=installed, check=True)
    recipe = REPO / "docs" / "recipes" / "limerick.toml"
    bad = cli("run", "--plugin", recipe, "--limit", "1", env={**installed, "PERSONAHUB_ECHO_TIMES": "0"})
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "error: environment: PERSONAHUB_ECHO_TIMES: Input should be greater than or equal to 1 (got '0')")
    assert [r["task"] for r in json.loads(cli("runs", "--json", env=installed, check=True).stdout)] == ["import"]
    cli("run", "--plugin", recipe, "--limit", "1", "-q", env=installed, check=True)
    cli("export", "limerick", "--format", "jsonl", "--out", tmp_path / "rows.jsonl", env=installed, check=True)
    (row,) = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    said = row["synthesized text"].split(" / ")
    assert len(said) == 2 and said[0] == said[1] and said[0].startswith("echo says")


@pytest.mark.parametrize("flag, value, installed_names", [
    ("--backend", "mine", "echo, fake, llama-cpp, openai"),
    ("--executor", "elsewhere", "local, one-by-one, ray"),
])
def test_an_unregistered_name_lists_the_installed_ones(installed, flag, value, installed_names):
    result = cli("run", "--plugin", REPO / "docs" / "recipes" / "limerick.toml", flag, value, env=installed)
    assert result.returncode == 2
    kind = flag[2:]
    assert result.stderr.strip() == f"error: unknown {kind} '{value}'; installed: {installed_names}"
