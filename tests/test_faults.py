"""kill -9 at random moments, then resume: nothing lost, nothing written twice, no run left 'running'.

Twenty kills over five kinds of work (ingest, import, a generative run, persona-to-persona, minhash),
each followed by the same command run to the end. The moments come from a seeded generator
(PERSONAHUB_FAULT_SEED replays a failure's choices); where a kill lands varies with the machine's
speed, the invariants checked afterwards may not. The fake backend is slowed by a test-only harness
(below), never by production code, so that kills land in the middle of generative runs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from personahub_core.store import Store

from personahub_core.testing import cli, write_jsonl

SEED = int(os.environ.get("PERSONAHUB_FAULT_SEED", "20261201"))
KILLS_PER_STAGE = 4

# Runs `personahub ARGS...` in this process after the imports are done (then "ready" appears), with
# every fake completion delayed by FAULT_DELAY seconds.
HARNESS = r'''
import os, sys, time
from personahub_core.testing import FakeBackend
from personahub_core.cli import main

delay = float(os.environ.get("FAULT_DELAY", "0"))
if delay:
    plain = FakeBackend.generate

    def slowly(self, requests):
        for answer in plain(self, requests):
            time.sleep(delay)
            yield answer

    FakeBackend.generate = slowly
open("ready", "w").close()
sys.argv = ["personahub", *sys.argv[1:]]
main()
'''

WORDS = ("nurse teacher farmer welder pilot chemist baker lawyer coach editor miner sailor painter "
         "plumber cashier courier ranger surgeon tailor typist").split()


def persona(i: int) -> str:
    a, b, c = WORDS[i % 20], WORDS[(i // 20) % 20], WORDS[(i // 400) % 20]
    return f"A {a} from town {i} who trains {b} apprentices and collects {c} stories on weekends."


LANDED: list[bool] = []  # whether each kill met a running process (shown with pytest -s)


def kill_at_random(tmp_path: Path, rng: random.Random, window: float, args: list[str], delay: float = 0.0) -> str:
    """Start the command, wait until it is past its imports, kill -9 it at a random moment in the window."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    env = {**os.environ, "FAULT_DELAY": str(delay)}
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    moment = rng.uniform(0, window)
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    finished = proc.returncode == 0 or (proc.returncode == 1 and "failed or were rejected" in err)  # before the kill
    assert finished or proc.returncode == -signal.SIGKILL, f"seed {SEED}: {args} exited {proc.returncode}: {err}"
    LANDED.append(proc.returncode == -signal.SIGKILL)
    return f"{' '.join(args[:3])} killed {moment:.2f}s in (seed {SEED})"


def resume(*args: str) -> None:
    result = cli(*args, "-q") if args[0] == "run" else cli(*args)
    assert result.returncode == 0, f"seed {SEED}: resume {args} exited {result.returncode}: {result.stderr}"


def check_runs(db: Path, what: str) -> None:
    """No run left 'running', and every run's counts equal the rows it wrote."""
    with Store(db, read_only=True) as store:
        assert store.scalar("SELECT count(*) FROM runs WHERE status = 'running'") == 0, what
        runs = store.runs()
        written = store.rows_written([r["id"] for r in runs])
    for run in runs:
        if run["id"] in written:
            assert (run["items_done"], run["items_failed"]) == written[run["id"]], (what, run)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_keeps_every_invariant(tmp_path, rng):
    # 1. ingest: many files, some texts repeated across files.
    texts = [f"Document {i}: notes on {WORDS[i % 20]} work, {WORDS[(i * 7) % 20]} tools and town {i % 900}."
             for i in range(16_000)]
    files = []
    for f in range(8):
        part = texts[f * 2000:(f + 1) * 2000] + texts[:200]  # the first 200 texts appear in every file
        files.append(write_jsonl(tmp_path / f"corpus{f}.jsonl", [{"text": t} for t in part]))
    ingest = ["ingest", *map(str, files), "--db", "docs.duckdb"]
    for _ in range(KILLS_PER_STAGE):
        what = kill_at_random(tmp_path, rng, 1.5, ingest)
        resume(*ingest)
        with Store(tmp_path / "docs.duckdb", read_only=True) as store:
            n, hashes = store.query("SELECT count(*), count(DISTINCT content_hash) FROM documents")[0]
        assert n == hashes == len(texts), what

    # 2. import, then 3. minhash over what was imported.
    personas = [persona(i) for i in range(20_000)]
    write_jsonl(tmp_path / "personas.jsonl", [{"persona": p} for p in personas + personas[:500]])
    imp = ["run", "--plugin", "import", "--input", "personas.jsonl", "--db", "big.duckdb"]
    for _ in range(KILLS_PER_STAGE):
        what = kill_at_random(tmp_path, rng, 1.5, imp)
        resume(*imp)
        with Store(tmp_path / "big.duckdb", read_only=True) as store:
            n, distinct = store.query("SELECT count(*), count(DISTINCT persona) FROM personas")[0]
        assert n == distinct == len(personas), what
        check_runs(tmp_path / "big.duckdb", what)
    minhash = ["run", "--plugin", "minhash", "--db", "big.duckdb"]
    for _ in range(KILLS_PER_STAGE):
        what = kill_at_random(tmp_path, rng, 2.0, minhash)
        resume(*minhash)
        with Store(tmp_path / "big.duckdb", read_only=True) as store:
            checked, distinct = store.query(
                "SELECT count(*), count(DISTINCT persona_id) FROM dedup_checked WHERE method = 'minhash'")[0]
            marks = store.query("SELECT count(*), count(DISTINCT persona_id) FROM dedup_marks")[0]
        assert checked == distinct == len(personas) and marks[0] == marks[1], what
        check_runs(tmp_path / "big.duckdb", what)

    # 4. a generative run and 5. persona-to-persona, on the slowed fake backend.
    write_jsonl(tmp_path / "few.jsonl", [{"persona": persona(i)} for i in range(0, 6000, 40)])  # 150 personas
    resume("run", "--plugin", "import", "--input", "few.jsonl", "--db", "gen.duckdb")
    math = ["run", "--plugin", "math", "--backend", "fake", "--db", "gen.duckdb"]
    for _ in range(KILLS_PER_STAGE):
        what = kill_at_random(tmp_path, rng, 2.5, math, delay=0.004)
        result = cli(*math, "-q")  # every answer may be rejected by math: exit 1 then, but the work is done
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
        check_generations(tmp_path / "gen.duckdb", "math", 150, what)
        check_runs(tmp_path / "gen.duckdb", what)
    p2p = ["run", "--plugin", "persona-to-persona", "--backend", "fake", "--hops", "2", "--db", "gen.duckdb"]
    for _ in range(KILLS_PER_STAGE):
        what = kill_at_random(tmp_path, rng, 2.5, p2p, delay=0.004)
        resume(*p2p)
        with Store(tmp_path / "gen.duckdb", read_only=True) as store:
            expected = store.scalar("SELECT count(*) FROM personas WHERE hop < 2")
            made = store.query("SELECT count(*), count(DISTINCT generation_key) FROM personas WHERE origin = 'expansion'")
            orphans = store.scalar(
                "SELECT count(*) FROM personas p WHERE origin = 'expansion' AND NOT EXISTS "
                "(SELECT 1 FROM generations g WHERE g.key = p.generation_key AND g.status = 'ok')")
        check_generations(tmp_path / "gen.duckdb", "persona-to-persona", expected, what)
        assert made[0][0] == made[0][1] and orphans == 0, what  # one persona per answered item, never two
        check_runs(tmp_path / "gen.duckdb", what)
    print(f"{sum(LANDED)} of {len(LANDED)} kills landed while the command ran (seed {SEED})")


def check_generations(db: Path, task: str, items: int, what: str) -> None:
    """Every work item ends ok, rejected or failed exactly once."""
    with Store(db, read_only=True) as store:
        n, keys, inputs = store.query(
            "SELECT count(*), count(DISTINCT key), count(DISTINCT input_id) FROM generations WHERE task = ?", [task])[0]
        statuses = {r[0] for r in store.query("SELECT DISTINCT status FROM generations WHERE task = ?", [task])}
    assert n == keys == inputs == items, (what, n, keys, inputs, items)
    assert statuses <= {"ok", "rejected", "failed"}, (what, statuses)


@pytest.mark.slow
def test_kill_9_during_export_and_report_leaves_the_output_absent_or_whole_and_the_store_intact(tmp_path, rng):
    personas = [persona(i) for i in range(10_000)]
    resume("run", "--plugin", "import", "--input", str(write_jsonl(tmp_path / "p.jsonl", [{"persona": p} for p in personas])))
    store = tmp_path / "personahub.duckdb"
    before = store.read_bytes()
    kills = [(["export", "personas", "--full", "--format", "jsonl", "--out", "out.jsonl"], 2),
             (["export", "personas", "--full", "--format", "parquet", "--out", "out.parquet"], 1),
             (["report", "--out", "out.html"], 2)]
    for args, times in kills:
        out = tmp_path / args[-1]
        for _ in range(times):
            what = kill_at_random(tmp_path, rng, 1.5, args)
            assert not out.exists() or whole(out, len(personas)), what
            assert store.read_bytes() == before, what  # opened read-only: not a byte changed
            resume(*args)  # the next write of that path leaves no partial file, and a whole output
            assert sorted(p.name for p in tmp_path.glob(f"*{out.name}*")) == [out.name] and whole(out, len(personas)), what
            out.unlink()
    print(f"{sum(LANDED)} of {len(LANDED)} kills landed while the command ran (seed {SEED})")


def whole(out: Path, rows: int) -> bool:
    """The output is complete: every row there (a report ends with its closing tag)."""
    if out.suffix == ".jsonl":
        return sum(1 for line in out.open() if json.loads(line)) == rows
    if out.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(out).num_rows == rows
    return out.read_text().rstrip().endswith("</html>")
