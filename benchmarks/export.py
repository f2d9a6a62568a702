"""Peak memory of ``export personas --full`` and ``export math --full`` as the store grows (target: flat
in the number of rows).

Baseline in the same run, on the same stores. Personas: the previous way to write the same query (the same
writers: jsonl by ``fetchmany``, parquet by DuckDB's, under DuckDB's default memory limit). A task's rows
(``--what math``: fake math rows, made by ``run --plugin math --backend fake``): the same export by the core
of an earlier git revision (``--baseline``; by default the last one whose prompts were rebuilt by a Python
function inside the sorting query, with no memory limit); the two files are compared (jsonl byte for byte,
parquet row by row in order). Each export runs in a child process of a small parent, so its peak RSS is its own.

    python benchmarks/export.py --n 400000
    python benchmarks/export.py --what math --n 400000

Measured 2026-12-05 (``--what math --n 400000``, one run, a loaded 2-core VM), peak RSS at 100k / 200k /
400k rows: jsonl 684 / 701 / 716 MB against 996 / 1,679 / 2,655 MB for the baseline, parquet 687 / 727 /
754 MB against 1,744 / 2,843 / 4,590 MB; same output every time; 20-40% slower (58.0 s against 46.7 s for
jsonl at 400k). "Same output" for Parquet means the same column types and rows in the same order (the
files differ in bytes: the columns are all marked optional now).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The last revision whose exports rebuilt a task's prompts with a Python function inside the query.
PROMPTS_IN_SQL = "f1679b836981739f5a05a144f42f7eec5c469996"
WORDS = ("nurse teacher farmer welder pilot chemist baker lawyer coach editor miner sailor painter plumber "
         "cashier courier ranger surgeon tailor typist river market school clinic engine garden harbour").split()

CHILD = """
import json, resource, sys, time
from pathlib import Path
mode, what, fmt, db, out = sys.argv[1:6]
from personahub_core.export import export
from personahub_core.plugins import get_registry
from personahub_core.store.exports import _persona_query
from personahub_core.store import Store
t0 = time.perf_counter()
written = None
with Store(db, read_only=True) as store:
    if mode == "personahub":
        written = export(store, what, fmt, Path(out), full=True, tasks=get_registry().tasks)
    elif fmt == "parquet":
        store.con.sql(_persona_query(True, False)).write_parquet(out)
    else:
        result = store.con.execute(_persona_query(True, False))
        names = [d[0] for d in result.description]
        with open(out, "w") as f:
            while rows := result.fetchmany(10_000):
                f.writelines(json.dumps(dict(zip(names, r)), default=str) + "\\n" for r in rows)
import personahub_core
print(json.dumps({"seconds": time.perf_counter() - t0, "rows": written, "core": personahub_core.__file__,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


MAKE_STORE = """
import random, sys
from pathlib import Path
from personahub_core.testing import run_task, write_jsonl
db, n, what, words = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].split()
rng = random.Random(0)
rows = [{"persona": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + f" #{i}"} for i in range(n)]
run_task("import", ["--input", str(write_jsonl(db.with_suffix(".jsonl"), rows))], db=db)
if what != "personas":
    run_task(what, [], db=db, backend="fake", batch_size=64)
"""

# Order-sensitive digest of a Parquet file's rows (the column types are compared beside it).
PARQUET_DIGEST = ("SELECT md5(string_agg(h, '' ORDER BY n)) FROM (SELECT file_row_number AS n, "
                  "md5(row(COLUMNS(* EXCLUDE file_row_number))::VARCHAR) AS h FROM read_parquet(?, file_row_number=true))")


def make_store(db: Path, n: int, what: str) -> None:
    # In a child: a process inherits its parent's peak RSS, so the parent stays small.
    subprocess.run([sys.executable, "-c", MAKE_STORE, str(db), str(n), what, " ".join(WORDS)], check=True)


def measure(mode: str, what: str, fmt: str, db: Path, core: Path | None = None) -> dict:
    """One export in a child; ``core``: a folder holding another revision's personahub_core to run."""
    out = db.with_name(f"{mode}{'-baseline' if core else ''}.{fmt}")
    env = {**os.environ, "PYTHONPATH": str(core)} if core else None
    # Run from the store's folder: `python -c` puts the working directory first on the path, so from the
    # repository the baseline would import the checkout's personahub_core instead of its own.
    done = subprocess.run([sys.executable, "-c", CHILD, mode, what, fmt, str(db), str(out)], capture_output=True,
                          text=True, check=True, env=env, cwd=db.parent)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (core is None) == (ROOT / "personahub_core" in Path(result["core"]).parents), result["core"]
    return {**result, "out": out}


def same_output(fmt: str, a: Path, b: Path) -> bool:
    if fmt == "jsonl":
        return filecmp.cmp(a, b, shallow=False)
    import duckdb

    con = duckdb.connect()
    described = [con.sql(f"DESCRIBE SELECT * FROM read_parquet('{f}')").fetchall() for f in (a, b)]
    return described[0] == described[1] and len({con.execute(PARQUET_DIGEST, [str(f)]).fetchall()[0][0] for f in (a, b)}) == 1


def baseline_core(rev: str, into: Path) -> Path:
    """personahub_core as it was at git revision ``rev``, unpacked under ``into``."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "personahub_core"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="rows in the largest store (the others have a quarter, a half)")
    parser.add_argument("--what", default="personas", help="'personas', or a task the fake backend runs (e.g. math)")
    parser.add_argument("--baseline", default=PROMPTS_IN_SQL, help="git revision whose core exports a task's rows as the baseline")
    args = parser.parse_args()
    sizes = [args.n // 4, args.n // 2, args.n]
    print(f"{'export ' + args.what + ' --full':<40}{'rows':>9}{'seconds':>9}{'peak RSS MB':>13}{'same output':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        core = None if args.what == "personas" else baseline_core(args.baseline, Path(tmp) / "baseline")
        for n in sizes:
            db = Path(tmp) / f"store{n}.duckdb"
            make_store(db, n, args.what)
            for fmt in ("jsonl", "parquet"):
                if core is None:
                    before = measure("baseline", "personas", fmt, db)
                    label = "previous (no memory limit)"
                else:
                    before = measure("personahub", args.what, fmt, db, core)
                    label = f"{args.baseline[:10]} (prompts in SQL)"
                now = measure("personahub", args.what, fmt, db)
                same = same_output(fmt, before["out"], now["out"])
                for r, name in ((before, label), (now, "personahub (256MB limit)")):
                    print(f"{fmt + ' ' + name:<40}{r['rows'] or n:>9}{r['seconds']:>9.1f}{r['peak_mb']:>13,.0f}{str(same):>13}")
                for r in (before, now):
                    r["out"].unlink()
            db.unlink()
    print("noisy: a shared 2-core machine; compare rows of the same run only")


if __name__ == "__main__":
    main()
