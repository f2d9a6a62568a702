"""``export TASK --full``: each row carries the prompts that were sent for it, in the export's order, and
the export runs under its DuckDB memory limit (the prompts are rebuilt in Python, outside the query)."""

from __future__ import annotations

import pytest

import json
from pathlib import Path

import pyarrow.parquet as pq

import personahub_core.export as export_module
from personahub_core.export import export
from personahub_core.plugins import get_registry
from personahub_core.store import Store
from personahub_core.testing import FakeBackend, run_task, write_jsonl

PROBLEM = "A baker sells 12 loaves at 3 euros each and 5 rolls at 1 euro each. How much does she take in?"
SOLUTION = "12 times 3 is 36 and 5 times 1 is 5, so 41.\nFinal answer: 41 euros"
JSON_COLUMNS = ("options", "sampling", "output", "prompt")


def import_personas(n: int) -> None:
    rows = [{"persona": f"A harbour pilot number {i} who guides container ships through fog."} for i in range(n)]
    run_task("import", ["--input", str(write_jsonl(Path("personas.jsonl"), rows))])


def exported(task: str, fmt: str) -> list[dict]:
    """The --full rows of ``task`` written as ``fmt`` and read back, JSON columns parsed."""
    out = Path(f"rows.{fmt}")
    with Store("personahub.duckdb", read_only=True) as store:
        export(store, task, fmt, out, full=True, tasks=get_registry().tasks)
    if fmt == "jsonl":
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    rows = pq.read_table(out).to_pylist()
    for row in rows:
        row.update({k: json.loads(row[k]) for k in JSON_COLUMNS if row[k] is not None})
        row["created_at"] = str(row["created_at"])
    return rows


def stored_order(task: str) -> list[str]:
    with Store("personahub.duckdb", read_only=True) as store:
        return [key for (key,) in store.query("SELECT key FROM generations WHERE task = ? AND status = 'ok' "
                                              "ORDER BY created_at, key", [task])]


def math_answers():
    """Problems and solutions; every third persona's first problem is unusable, so its item restarts once."""
    tries: dict[int, int] = {}

    def answer(prompt) -> str:
        if prompt.completion.rstrip().endswith("Solution:"):
            return SOLUTION
        number = int(prompt.completion.split("harbour pilot number ")[-1].split()[0])  # the persona asked about
        tries[number] = tries.get(number, 0) + 1
        return "Too short." if number % 3 == 0 and tries[number] == 1 else PROBLEM

    return answer


@pytest.mark.parametrize("task, args", [("math", ["--with-solution"]), ("instructions", [])])
def test_full_rows_carry_the_prompts_that_were_sent_in_order(task, args):
    import_personas(150)
    FakeBackend.calls.clear()
    FakeBackend.responder = math_answers() if task == "math" else None
    assert run_task(task, args, backend="fake")["items_done"] == 150
    sent = sorted(json.dumps({"prompt": c.completion, "messages": c.chat}, sort_keys=True) for c in FakeBackend.calls)

    rows = exported(task, "jsonl")
    assert [r["key"] for r in rows] == stored_order(task)
    assert all(r["prompt_check"] == "ok" and r["input persona"] in r["prompt"][0]["prompt"] for r in rows)
    assert sorted(json.dumps(p, sort_keys=True) for r in rows for p in r["prompt"]) == sent
    if task == "math":  # two steps a row, and a restarted item's first problem too
        assert {len(r["prompt"]) for r in rows} == {2, 3}
    assert exported(task, "parquet") == rows


@pytest.mark.slow
def test_full_rows_export_under_a_memory_limit_too_small_for_their_prompts(monkeypatch):
    # 5,000 rows carry ~25 MB of prompts; DuckDB failed with "Out of Memory" under 128 MB while a Python
    # function in its query made them, so such exports ran with no limit (2.5 GB at 200k rows).
    import_personas(5000)
    FakeBackend.responder = lambda prompt: SOLUTION if prompt.completion.rstrip().endswith("Solution:") else PROBLEM
    run_task("math", backend="fake")
    monkeypatch.setattr(export_module, "EXPORT_MEMORY", "128MB")
    limits = []
    tuned = Store.tuned

    def recorded(self, **settings):
        limits.append(settings.get("memory_limit"))
        return tuned(self, **settings)

    monkeypatch.setattr(Store, "tuned", recorded)
    for fmt in ("jsonl", "parquet"):
        rows = exported("math", fmt)
        assert len(rows) == 5000 and all(r["prompt_check"] == "ok" for r in rows)
    assert limits == ["128MB", "128MB"]


def test_a_csv_export_leaves_no_scratch_file_and_clears_a_killed_ones():
    import_personas(5)
    FakeBackend.responder = lambda prompt: PROBLEM
    run_task("math", backend="fake")
    leftovers = [Path(".rows.csv.partial"), Path(".rows.csv.partial.part")]  # what a kill -9 mid-export leaves
    for path in leftovers:
        path.write_text("half a file")
    with Store("personahub.duckdb", read_only=True) as store:
        assert export(store, "math", "csv", Path("rows.csv"), full=True, tasks=get_registry().tasks) == 5
    assert len(Path("rows.csv").read_text(encoding="utf-8").splitlines()) >= 6  # the header and five rows
    assert [p for p in leftovers if p.exists()] == []
