"""Peak memory of ``export personas --full`` as the store grows (target: flat in the number of rows).

Baseline in the same run: the previous way to write the same query (the same writers: jsonl by
``fetchmany``, parquet by DuckDB's, under DuckDB's default memory limit), on the same stores. Each export runs in a
child process of a small parent, so its peak RSS is its own.

    python benchmarks/export.py --n 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORDS = ("nurse teacher farmer welder pilot chemist baker lawyer coach editor miner sailor painter plumber "
         "cashier courier ranger surgeon tailor typist river market school clinic engine garden harbour").split()

CHILD = """
import json, resource, sys, time
from pathlib import Path
mode, fmt, db, out = sys.argv[1:5]
from personahub_core.export import _persona_query, export
from personahub_core.store import Store
t0 = time.perf_counter()
with Store(db, read_only=True) as store:
    if mode == "personahub":
        export(store, "personas", fmt, Path(out), full=True)
    elif fmt == "parquet":
        store.con.sql(_persona_query(True, False)).write_parquet(out)
    else:
        result = store.con.execute(_persona_query(True, False))
        names = [d[0] for d in result.description]
        with open(out, "w") as f:
            while rows := result.fetchmany(10_000):
                f.writelines(json.dumps(dict(zip(names, r)), default=str) + "\\n" for r in rows)
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


MAKE_STORE = """
import random, sys
from pathlib import Path
from personahub_core.testing import run_task, write_jsonl
db, n, words = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
rng = random.Random(0)
rows = [{"persona": " ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) + f" #{i}"} for i in range(n)]
run_task("import", ["--input", str(write_jsonl(db.with_suffix(".jsonl"), rows))], db=db)
"""


def make_store(db: Path, n: int) -> None:
    # In a child: a process inherits its parent's peak RSS, so the parent stays small.
    subprocess.run([sys.executable, "-c", MAKE_STORE, str(db), str(n), " ".join(WORDS)], check=True)


def measure(mode: str, fmt: str, db: Path) -> dict:
    out = db.with_name(f"{mode}.{fmt}")
    done = subprocess.run([sys.executable, "-c", CHILD, mode, fmt, str(db), str(out)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="personas in the larger store (the smaller has a quarter)")
    args = parser.parse_args()
    sizes = [args.n // 4, args.n]
    print(f"{'export --full':<40}{'rows':>9}{'seconds':>9}{'peak RSS MB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            db = Path(tmp) / f"store{n}.duckdb"
            make_store(db, n)
            for fmt in ("jsonl", "parquet"):
                for mode, label in (("baseline", "previous (no memory limit)"), ("personahub", "personahub (256MB limit)")):
                    r = measure(mode, fmt, db)
                    print(f"{fmt + ' ' + label:<40}{n:>9}{r['seconds']:>9.1f}{r['peak_mb']:>13,.0f}")
    print("noisy: a shared 2-core machine; compare rows of the same run only")


if __name__ == "__main__":
    main()
