"""Ingest speed and peak memory on a large generated corpus (target: < 500 MB peak RSS for 1M short texts).

Baseline in the same run: the naive approach of reading the whole jsonl into a list and inserting it with
one executemany, on a tenth of the corpus (the full size would take too long to be worth waiting for).

    python benchmarks/ingest.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("river market school clinic engine garden harbour library festival council recipe bakery station "
         "orchard forum repair tournament lecture ferry museum volunteer budget season report harvest").split()


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    recent: list[str] = []
    with path.open("w") as f:
        for i in range(n):
            if recent and i % 20 == 0:  # 5% exact duplicates of a recent text
                text = rng.choice(recent)
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))) + f" #{i}"
                recent = (recent + [text])[-1000:]
            f.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")


CHILD = """
import resource, sys, time, json
from pathlib import Path
mode, corpus, db = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
if mode == "personahub":
    from personahub_core.ingest import ingest_paths
    from personahub_core.store import Store
    with Store(db) as store:
        report = ingest_paths(store, [corpus], quiet=True)
    added = report.added
else:
    import duckdb
    rows = [json.loads(line) for line in corpus.open()]
    con = duckdb.connect(db)
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE TABLE documents (id VARCHAR, text VARCHAR)")
    con.executemany("INSERT INTO documents VALUES (?, ?)", [[r["id"], r["text"]] for r in rows])
    added = len(rows)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "added": added, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(mode: str, corpus: Path, workdir: Path) -> dict:
    db = workdir / f"{mode}-{corpus.stem}.duckdb"
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(corpus), str(db)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="texts in the corpus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus, small = work / "corpus.jsonl", work / "small.jsonl"
        write_corpus(corpus, args.n)
        write_corpus(small, max(args.n // 10, 1000))
        ours = measure("personahub", corpus, work)
        naive_small = measure("naive", small, work)
    print(f"{'path':<38}{'texts':>10}{'docs/s':>12}{'peak RSS MB':>14}")
    print(f"{'personahub ingest (streamed, deduped)':<38}{args.n:>10}{args.n / ours['seconds']:>12,.0f}{ours['peak_mb']:>14,.0f}")
    n_small = max(args.n // 10, 1000)
    print(f"{'naive load-all + executemany':<38}{n_small:>10}{n_small / naive_small['seconds']:>12,.0f}{naive_small['peak_mb']:>14,.0f}")
    print(f"documents stored: {ours['added']} (exact duplicates collapsed); target peak RSS < 500 MB at 1M texts")


if __name__ == "__main__":
    main()
