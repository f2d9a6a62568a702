"""`import personahub`: the flat public namespace, and the notebook example in docs/python-api.md run as
it is written."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

import personahub
from personahub_core.testing import run_task

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return [part.split("```", 1)[0] for part in page.read_text().split("```python\n")[1:]]


def test_the_notebook_example_in_python_api_md_runs_as_written():
    [example] = python_blocks(DOCS / "python-api.md")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(example, "docs/python-api.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("1 math problem(s) in")  # --where kept the nurse only
    assert lines[1] == "1 ['input persona', 'synthesized text', 'description']"
    assert lines[2] == "2 personas; 2 runs"


def test_every_public_name_is_importable_and_documented():
    page = (DOCS / "python-api.md").read_text()
    for name in personahub.__all__:
        assert hasattr(personahub, name), name
        if not name.startswith("__"):
            assert f"`{name}" in page or f"personahub.{name}" in page, f"{name} is not in docs/python-api.md"


def test_options_by_name_are_checked_like_command_line_options(personas_store):
    with pytest.raises(personahub.UsageError, match="task 'math' option --difficulty"):
        personahub.run("math", {"difficulty": "impossible"}, db=personas_store, backend="fake")
    with pytest.raises(personahub.UsageError, match="unknown task 'nope'"):
        personahub.run("nope", db=personas_store)
    summary = personahub.run("math", {"topic": "geometry"}, db=personas_store, backend="fake")
    assert summary["items_done"] == 6
    again = run_task("math", ["--topic", "geometry"], db=personas_store, backend="fake")
    assert again["items_done"] == 0  # the same work, keyed the same way: nothing new to do


def test_open_store_reads_what_export_writes(personas_store):
    personahub.run("math", db=personas_store, backend="fake")
    with personahub.open_store(personas_store) as store:
        assert store.personas().num_rows == 6
        assert {"id", "origin", "hop", "model"} <= set(store.personas(full=True).column_names)
        rows = store.rows("math", full=True).to_pylist()
        assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
        with pytest.raises(personahub.UsageError, match="nothing stored for 'npc'"):
            store.rows("npc")
