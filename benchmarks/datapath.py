"""The data path against DuckDB doing the same work, in the same run (issue #12's targets).

Makes its own synthetic data in a temporary folder, then times, each in a fresh process:

  import     ``personahub run --plugin import`` of N personas      beside read_json + primary key into a bare table
  import 2   the same import again (adds nothing)                   beside the same insert as an anti-join
  ingest     ``personahub ingest`` of N texts, with peak RSS        beside read_json into a bare table
  math       ``run --plugin math --backend fake`` over M personas   beside the fake backend alone on the same prompts
  math 2     the same run again (everything is stored)

Wall times are what the targets are about; CPU seconds are printed beside them, since on a shared
machine they are the steadier figure.

    .venv/bin/python benchmarks/datapath.py                 # N = 1,000,000, M = 100,000
    .venv/bin/python benchmarks/datapath.py --n 50000 --math-n 5000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest import WORDS, write_corpus  # the same corpus as the ingest benchmark

PERSONAHUB = str(Path(sys.executable).parent / "personahub")
JOBS = ("nurse teacher welder baker pilot farmer chemist lawyer plumber editor librarian carpenter "
        "translator beekeeper surveyor").split()


def write_personas(path: Path, n: int) -> None:
    rng = random.Random(1)
    with path.open("w") as f:
        for i in range(n):
            persona = (f"A {rng.choice(JOBS)} from the {rng.choice(WORDS)} district who spends weekends at the "
                       f"{rng.choice(WORDS)} and the {rng.choice(WORDS)} (#{i})")
            f.write(json.dumps({"persona": persona}) + "\n")


CPU: dict[str, float] = {}  # CPU seconds of the last command, by label: steadier than wall time on a shared machine


def child_peak(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB (the child's own, from wait4) and stdout of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed (status {status})")
    CPU["last"] = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, out


DUCKDB_CHILD = """
import duckdb, sys, time
db, sql = sys.argv[1], sys.argv[2:]
con = duckdb.connect(db)
con.execute("SET enable_progress_bar = false")
t = time.perf_counter()
for s in sql:
    con.execute(s)
print(time.perf_counter() - t)
"""


def duckdb_seconds(db: Path, *sql: str) -> float:
    out = subprocess.run([sys.executable, "-c", DUCKDB_CHILD, str(db), *sql], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


FAKE_CHILD = """
import sys, time, json
from personahub_core.settings import Settings
from personahub_core.testing import FakeBackend
from personahub_math import MathProblems
from personahub_core.driving import sampled
task, n = MathProblems(), int(sys.argv[1])
prompt = task.prompt("A nurse who grows tomatoes on her balcony")
settings = Settings()
prompts = [sampled(prompt, settings, seed) for seed in range(n)]
t = time.perf_counter()
for _ in FakeBackend(settings).generate(prompts):
    pass
print(time.perf_counter() - t)
"""


def line(label: str, ours: str, limit: str, verdict: str = "") -> None:
    print(f"{label:<34} {ours:>22}   {limit:>30}   {verdict}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="personas imported and texts ingested")
    parser.add_argument("--math-n", type=int, default=100_000, help="personas the math run goes over")
    args = parser.parse_args()
    n, m = args.n, min(args.math_n, args.n)

    with tempfile.TemporaryDirectory(prefix="datapath-") as tmp:
        tmp = Path(tmp)
        personas, corpus, math_personas = tmp / "personas.jsonl", tmp / "corpus.jsonl", tmp / "math.jsonl"
        write_personas(personas, n)
        write_corpus(corpus, n)
        write_personas(math_personas, m)
        print(f"data: {n:,} personas, {n:,} texts, {m:,} personas for math, in {tmp}\n")
        line("step", "personahub", "DuckDB, same work", "target")

        # Import, then the same import again.
        db = tmp / "import.duckdb"
        secs, _, out = child_peak([PERSONAHUB, "run", "--plugin", "import", "--input", str(personas), "--db", str(db),
                                   "--json", "-q"])
        done = json.loads(out.strip().splitlines()[-1])["items_done"]
        base_db = tmp / "bare.duckdb"
        read = f"read_json('{personas}', format = 'newline_delimited', columns = {{'persona': 'VARCHAR'}})"
        limit = duckdb_seconds(base_db, "CREATE TABLE t (id VARCHAR PRIMARY KEY, persona VARCHAR)",
                               f"INSERT INTO t SELECT md5(persona), persona FROM {read}")
        line("import (personas/s)", f"{done / secs:,.0f} ({secs:.1f} s, {CPU['last']:.1f} CPU-s)", f"{n / limit:,.0f} ({limit:.1f} s)",
             f">= 100,000/s {verdict(done / secs >= 100_000)}")
        secs2, _, _ = child_peak([PERSONAHUB, "run", "--plugin", "import", "--input", str(personas), "--db", str(db),
                                  "--json", "-q"])
        limit2 = duckdb_seconds(base_db, f"INSERT INTO t SELECT md5(persona), persona FROM {read} r "
                                         "WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = md5(r.persona))")
        line("import again, adds nothing (s)", f"{secs2:.1f}", f"{limit2:.1f}", f"< 5 s {verdict(secs2 < 5)}")

        # Ingest, with the process's peak memory.
        secs, peak, out = child_peak([PERSONAHUB, "ingest", str(corpus), "--db", str(tmp / "ingest.duckdb"), "--json"])
        read_n = json.loads(out.strip().splitlines()[-1])["read"]
        limit = duckdb_seconds(tmp / "bare_ingest.duckdb",
                               f"CREATE TABLE d AS SELECT * FROM read_json('{corpus}', format = 'newline_delimited', "
                               "columns = {'id': 'VARCHAR', 'text': 'VARCHAR'})")
        line("ingest (texts/s)", f"{read_n / secs:,.0f} ({secs:.1f} s, {CPU['last']:.1f} CPU-s)", f"{n / limit:,.0f} ({limit:.1f} s)",
             f">= 100,000/s {verdict(read_n / secs >= 100_000)}")
        line("ingest peak RSS (MB)", f"{peak:,.0f}", "", f"< 500 MB {verdict(peak < 500)}")

        # Math on the fake backend, then the rerun that finds everything stored.
        db = tmp / "math.duckdb"
        subprocess.run([PERSONAHUB, "run", "--plugin", "import", "--input", str(math_personas), "--db", str(db), "-q"],
                       check=True)
        secs, _, out = child_peak([PERSONAHUB, "run", "--plugin", "math", "--backend", "fake", "--db", str(db),
                                   "--json", "-q"])
        summary = json.loads(out.strip().splitlines()[-1])
        items = summary["items_done"] + summary["items_failed"] + summary["items_rejected"]
        fake = float(subprocess.run([sys.executable, "-c", FAKE_CHILD, str(m)], capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1])
        line("math, fake backend (items/s)", f"{items / secs:,.0f} ({secs:.1f} s, {CPU['last']:.1f} CPU-s)",
             f"backend alone {m / fake:,.0f}/s", f">= 2,000/s {verdict(items / secs >= 2000)}")
        fake_cpu = CPU["last"]
        secs2, _, out = child_peak([PERSONAHUB, "run", "--plugin", "math", "--backend", "fake", "--db", str(db),
                                    "--json", "-q"])
        skipped = json.loads(out.strip().splitlines()[-1])["items_skipped"]
        line("math again, all stored (s)", f"{secs2:.1f} ({skipped:,} skipped)", "", f"< 5 s {verdict(secs2 < 5)}")
        print(f"\nmath per CPU-second: {items / fake_cpu:,.0f} items (on a machine shared with other work, "
              "the steadier figure)")


if __name__ == "__main__":
    main()
