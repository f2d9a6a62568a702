"""``run --plugin verify --task TASK``: stored problems solved k times through the (scripted) fake
backend, answers compared by value, verdicts stored as rows keyed by the judged row; resumable;
``export --verified`` and ``--where`` keep rows by their verdicts; tools' code parsed, never run."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from personahub_core.api import dry_run
from personahub_core.errors import UsageError
from personahub_core.store import Store
from personahub_core.testing import PERSONAS, FakeBackend, cli, exported_rows, run_task

# A problem for each of the first three personas, and what three solutions of it answer.
PROBLEMS = {
    PERSONAS[0]: "A clinic has 40 vaccine doses and gives 20 of them on Monday. What share of the doses is left?",
    PERSONAS[1]: "A lever frame has 12 levers and 5 of them are painted red. How many are not red?",
    PERSONAS[2]: "A service handles 3,000 requests a second for 1.008 seconds. How many requests is that?",
}
SOLUTIONS = {  # equal by value / three different answers / one solution without a final answer
    PROBLEMS[PERSONAS[0]]: ["1/2", "0.5", r"\frac{1}{2}"],
    PROBLEMS[PERSONAS[1]]: ["7", "17", "8"],
    PROBLEMS[PERSONAS[2]]: ["$3,024", "3024 requests", None],
}


class Scripted:
    """Math problems by persona; each problem's solutions in turn, as three samples would differ."""

    def __init__(self):
        self.asked: dict[str, int] = defaultdict(int)

    def __call__(self, prompt) -> str:
        last = prompt.completion.rstrip().rsplit("\n", 2)
        if last[-1] == "Problem:":
            return " " + PROBLEMS[last[-2].removeprefix("Persona: ")]
        problem = last[-2].removeprefix("Problem: ")
        if prompt.completion.startswith("Each math problem"):  # math --with-solution: the row's own answer
            return " Half of them.\nFinal answer: 0.25"
        answer = SOLUTIONS[problem][self.asked[problem] % 3]
        self.asked[problem] += 1
        return " We work it out." + (f"\nFinal answer: {answer}" if answer else " It is hard to say.")


@pytest.fixture
def db(personas_store) -> Path:
    """Three math rows made through the fake backend, whose solutions are scripted."""
    FakeBackend.responder = Scripted()
    run_task("math", db=personas_store, backend="fake", limit=3)
    return personas_store


def verdict_rows(db, task: str = "verify") -> list[dict]:
    """The verdict rows of a verifier, each with the text of the row it judges."""
    with Store(db, read_only=True) as store:
        rows = store.query_dicts(
            "SELECT v.output, json_extract_string(g.output, '$.\"synthesized text\"') AS judged "
            "FROM generations v JOIN generations g ON g.key = v.input_id WHERE v.task = ?", [task])
    return [{**json.loads(r["output"]), "judged": r["judged"]} for r in rows]


def verdicts(db, task: str = "verify") -> dict[str, dict]:
    """The verdict rows of a verifier, by the problem they judge."""
    return {v["judged"]: v for v in verdict_rows(db, task)}


def test_answers_equal_by_value_agree_and_different_ones_do_not(db):
    summary = run_task("verify", ["--task", "math", "--k", "3"], db=db, backend="fake")
    assert (summary["items_done"], summary["items_failed"]) == (3, 0)
    found = verdicts(db)
    half, levers, requests = (found[PROBLEMS[p]] for p in PERSONAS[:3])
    assert half["answers"] == ["1/2", "0.5", r"\frac{1}{2}"]
    assert (half["agreement"], half["majority_answer"], half["passed"]) == (1.0, "1/2", True)
    assert (levers["agreement"], levers["passed"]) == (pytest.approx(1 / 3, abs=1e-3), False)
    # Two of three agree ($3,024 = 3024 requests); the third solution gave no final answer.
    assert requests["answers"] == ["$3,024", "3024 requests", None]
    assert (requests["agreement"], requests["passed"]) == (pytest.approx(2 / 3, abs=1e-3), True)
    assert half["verifies"] == "math" and half["k"] == 3 and half["own_answer"] is None
    # Each solution was its own call, with its own seed.
    seeds = [p.seed for p in FakeBackend.calls if p.completion.startswith("Each problem below")]
    assert len(seeds) == 9 and len(set(seeds)) == 9


def test_a_bar_of_all_three_fails_two_of_three(db):
    run_task("verify", ["--task", "math", "--min-agreement", "1"], db=db, backend="fake")
    found = verdicts(db)
    assert [found[PROBLEMS[p]]["passed"] for p in PERSONAS[:3]] == [True, False, False]


def test_the_rows_own_answer_must_be_the_agreed_one(personas_store):
    FakeBackend.responder = Scripted()
    run_task("math", ["--with-solution"], db=personas_store, backend="fake", limit=1)
    run_task("verify", ["--task", "math"], db=personas_store, backend="fake")
    (verdict,) = verdicts(personas_store).values()
    assert verdict["own_answer"] == "0.25" and verdict["agreement"] == 1.0
    assert verdict["matches_own_answer"] is False and verdict["passed"] is False


def test_resume_does_only_what_is_missing_and_never_duplicates(db):
    first = run_task("verify", ["--task", "math"], db=db, backend="fake", limit=1)
    rest = run_task("verify", ["--task", "math"], db=db, backend="fake")
    again = run_task("verify", ["--task", "math"], db=db, backend="fake")
    assert (first["items_done"], rest["items_done"], again["items_done"]) == (1, 2, 0)
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*), count(DISTINCT input_id) FROM generations WHERE task = 'verify'") == [(3, 3)]
    # Another k is other work: new verdicts, the old ones kept. Verdicts themselves are nothing to solve.
    assert run_task("verify", ["--task", "math", "--k", "2"], db=db, backend="fake")["items_done"] == 3
    assert run_task("verify", ["--task", "verify"], db=db, backend="fake")["items_done"] == 0


@pytest.mark.slow
def test_export_verified_and_where_keep_rows_by_their_verdicts(db, tmp_path):
    run_task("verify", ["--task", "math"], db=db, backend="fake")
    problems = lambda rows: sorted(r["synthesized text"] for r in rows)  # noqa: E731
    assert len(exported_rows(db, "math")) == 3
    out = tmp_path / "verified.jsonl"
    cli("export", "math", "--verified", "--out", out, "--db", db, check=True)
    verified = [json.loads(line) for line in out.read_text().splitlines()]
    assert problems(verified) == sorted([PROBLEMS[PERSONAS[0]], PROBLEMS[PERSONAS[2]]])
    assert set(verified[0]) == {"input persona", "synthesized text", "description"}
    assert problems(exported_rows(db, "math", where=["agreement>=0.9"])) == [PROBLEMS[PERSONAS[0]]]
    assert problems(exported_rows(db, "math", where=["passed=false", "verdict=verify"])) == [PROBLEMS[PERSONAS[1]]]


def test_a_row_with_any_failed_verdict_is_not_verified(db):
    """Verdicts from two verifiers (k=3, then k=2 whose two answers always differ): a row is verified
    only when every verdict on it passed."""
    run_task("verify", ["--task", "math"], db=db, backend="fake")
    answers = iter(["7", "8"] * 3)
    FakeBackend.responder = lambda prompt: f" Done.\nFinal answer: {next(answers)}"
    run_task("verify", ["--task", "math", "--k", "2"], db=db, backend="fake")
    assert exported_rows(db, "math", verified=True) == []  # two rows passed the first verdict, none the second
    assert len(exported_rows(db, "math", where=["passed=true"])) == 2  # --where: one verdict meeting it is enough


@pytest.mark.parametrize("args, message", [
    (["export", "math", "--where", "score>=high"], "'score' takes a number"),
    (["run", "--plugin", "verify", "--task", "npc", "--backend", "fake"], "no finished rows of 'npc'"),
])
@pytest.mark.slow
def test_bad_selections_are_one_line_and_exit_2(db, tmp_path, args, message):
    result = cli(*args, *(["--out", tmp_path / "x.jsonl"] if args[0] == "export" else []), "--db", db)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("task, choose, message", [
    ("math", {"where": ["colour=red"]}, "unknown field 'colour'; fields: verdict, passed, score, agreement"),
    ("math", {"where": ["passed=maybe"]}, "'passed' takes true or false"),
    ("personas", {"verified": True}, "personas have none"),
])
def test_bad_verdict_filters_are_usage_errors(db, task, choose, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        exported_rows(db, task, **choose)


def test_verify_needs_a_task(db):
    with pytest.raises(UsageError, match="task 'verify' option --task: Field required"):
        run_task("verify", [], db=db, backend="fake")


TOOL = {"name": "Harvest Log", "description": "Records the weight of honey taken from each hive on a date.",
        "function_name": "log_harvest",
        "input_args": [{"name": "kilograms", "type": "number", "description": "Weight of honey taken."}],
        "return": {"type": "boolean", "description": "True once the entry is saved."}, "depend": []}


def test_tools_code_is_parsed_and_never_run(personas_store, tmp_path):
    marker = tmp_path / "ran.txt"
    codes = iter([f"def log_harvest(kilograms):\n    open({str(marker)!r}, 'w').write('ran')\n    return True",
                  "def log_harvest(kilograms):\n    return (kilograms"])
    FakeBackend.responder = lambda p: json.dumps(TOOL) if p.json_schema else next(codes)
    assert run_task("tools", ["--implement"], db=personas_store, backend="fake", limit=2)["items_done"] == 2
    FakeBackend.responder = None
    assert run_task("verify", ["--task", "tools"], db=personas_store, backend="fake")["items_done"] == 2
    assert not marker.exists()
    found = sorted(verdict_rows(personas_store), key=lambda v: v["passed"])
    assert [(v["passed"], v["parses"]) for v in found] == [(False, False), (True, True)]
    assert found[0]["problem"].startswith("line 2:") and found[1]["defines_function"] is True
    assert not any(p.completion.startswith("Each problem below") for p in FakeBackend.calls)  # nothing solved


def test_dry_run_counts_rows_to_judge_including_ones_needing_no_call(db):
    assert dry_run("verify", ["--task", "math"], db=db, backend="fake")["items_to_run"] == 3
    FakeBackend.responder = lambda p: json.dumps(TOOL) if p.json_schema else "def log_harvest(kilograms):\n    return True"
    run_task("tools", ["--implement"], db=db, backend="fake", limit=1)
    plan = dry_run("verify", ["--task", "tools"], db=db, backend="fake")
    assert plan["items_to_run"] == 1 and plan["prompt_tokens"] == 0


def test_tools_rows_without_code_are_skipped_with_a_note(personas_store):
    FakeBackend.responder = lambda p: json.dumps(TOOL)
    run_task("tools", db=personas_store, backend="fake", limit=2)
    summary = run_task("verify", ["--task", "tools"], db=personas_store, backend="fake")
    assert summary["items_done"] == 0 and any("2 rows of tools have nothing" in n for n in summary["notes"])


@pytest.mark.model
@pytest.mark.slow
def test_the_default_model_solves_stored_problems(db):
    """Two problems, two solutions each, by the real default model: verdicts are stored and keyed by the model."""
    summary = run_task("verify", ["--task", "math", "--k", "2"], db=db, backend="llama-cpp", limit=2, max_tokens=48)
    assert summary["items_done"] == 2 and summary["completion_tokens"] > 0
    found = [v for v in verdicts(db).values() if v["k"] == 2]
    assert len(found) == 2
    for verdict in found:
        assert len(verdict["answers"]) == 2 and verdict["agreement"] in (0.0, 0.5, 1.0)
    fake = run_task("verify", ["--task", "math", "--k", "2"], db=db, backend="fake", limit=2)
    assert fake["items_done"] == 2  # the same work by another model is new work
