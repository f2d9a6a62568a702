"""A kit for plugin authors: a deterministic fake backend, a temporary store, the installed command line.
Its pytest fixtures (an empty folder and a clean environment per test) are in
``personahub_core.pytest_fixtures``: add ``pytest_plugins = ["personahub_core.pytest_fixtures"]`` to
your top-level conftest.py.

    from personahub_core.testing import FakeBackend, temporary_store, run_task

    def test_my_synthesizer(tmp_path):
        FakeBackend.responder = lambda request: "a problem"
        summary = run_task("my-task", db=tmp_path / "t.duckdb", backend="fake", limit=2)
        assert summary["items_done"] == 2
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .backends.fake import FakeBackend, example_for_schema  # noqa: F401  (the kit's public names)
from .store import Store

PERSONAHUB = str(Path(sys.executable).parent / "personahub")  # the console script beside this Python


@contextmanager
def temporary_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(Path(tmp_path) / "test.duckdb")
    try:
        yield store
    finally:
        store.close()


@contextmanager
def plugins_registered(*plugins: object) -> Iterator[object]:
    """Load the installed plugins plus these (modules or objects with hook implementations)."""
    from . import plugins as loader

    loader._registry = loader.load_plugins(extra=list(plugins))
    try:
        yield loader._registry
    finally:
        loader.reset_registry()


def run_task(task: str, task_args: list[str] | None = None, **flags) -> dict:
    """Run a task as ``personahub run --plugin TASK`` would and return its summary dict."""
    from .api import run

    return run(task, task_args or [], quiet=True, **flags)


def cli(*args: str, env: dict | None = None, check: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the installed ``personahub`` console script, as a user would."""
    result = subprocess.run(
        [PERSONAHUB, *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"personahub {' '.join(map(str, args))} exited {result.returncode}:\n{result.stderr}")
    return result


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def wheel_files(project: str | Path, build_dir: str | Path) -> set[str]:
    """The paths inside the wheel a plugin's folder (its pyproject.toml) builds: what ``pip install``
    puts in place, unlike the editable install the tests run against. Built from a copy in
    ``build_dir``, so the plugin's folder is left as it was."""
    import shutil
    import zipfile

    source = Path(build_dir) / "source"
    shutil.copytree(project, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__", "tests"))
    subprocess.run([sys.executable, "-c", "from setuptools import build_meta; build_meta.build_wheel('dist')"],
                   cwd=source, check=True, capture_output=True, timeout=300)
    [wheel] = (source / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


PERSONAS = [
    "A pediatric nurse in a rural clinic who organises vaccination days for families.",
    "A retired railway signal engineer who restores old lever frames as a hobby.",
    "A junior Rust developer learning async programming for a logistics startup.",
    "A beekeeper who sells heather honey at a weekly farmers' market.",
    "A high school physics teacher who coaches the robotics club after class.",
    "A freelance translator of Portuguese legal contracts working from home.",
]


def import_texts(texts: list[str], name: str = "p.jsonl", **flags) -> None:
    """Import these persona texts (ids made from their position and the file name) into the store."""
    write_jsonl(Path(name), [{"persona": t, "id": f"p{k:05d}-{name}"} for k, t in enumerate(texts)])
    run_task("import", ["--input", name], **flags)


def dedup_marks(method: str, db: str | Path = "personahub.duckdb") -> dict[str, dict]:
    """The marks one deduplicator left, by the text of the persona marked."""
    with Store(db, read_only=True) as store:
        rows = store.query_dicts("SELECT m.*, p.persona FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                                 "WHERE m.method = ?", [method])
    return {r["persona"]: r for r in rows}


def kept_personas(db: str | Path = "personahub.duckdb") -> list[str]:
    """The texts of the personas no deduplicator marked, in creation order."""
    with Store(db, read_only=True) as store:
        return store.select_personas(columns=("persona",)).column("persona").to_pylist()


def exported_rows(db: str | Path, task: str, full: bool = False, include_all: bool = False) -> list[dict]:
    """A task's rows as ``personahub export TASK`` writes them (JSONL, read back)."""
    from .export import export
    from .plugins import get_registry

    out = Path(db).parent / f"{task}.export.jsonl"
    with Store(db, read_only=True) as store:
        export(store, task, "jsonl", out, full=full, include_all=include_all, tasks=get_registry().tasks)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
