"""The Ray data path: `run --plugin math --backend fake` under `--executor ray` (actors write Parquet
shards, the store merges them) beside `--executor local`, on the same personas, at two sizes.

For each size it prints, local and Ray side by side, items/s end to end (Ray's start included) and the
driver's peak RSS (VmHWM of the process that runs the command; Ray's own processes and the actors are
not in it). Under Ray neither the rows nor the work items are ever all in the driver (the selection
streams, the items go to Parquet a chunk at a time), so its peak should not grow with the row count;
what grows is printed as bytes per item. The local executor spills its pending items to a temporary
file and streams them back (its progress bar's total is their count), so it holds none of them either.

The limit beside it: a bare DuckDB process inserting the same number of generation-sized rows into a
table keyed like ours, in chunks, under the same memory limit. DuckDB caches table blocks up to its
memory limit (default 80% of RAM) and keeps the key index in memory, so part of any store's peak grows
with its rows; ``--memory-limit`` (the ``memory_limit`` setting) bounds the cache.

    PYTHONPATH=. .venv/bin/python benchmarks/ray_datapath.py --n 1000000
    PYTHONPATH=. .venv/bin/python benchmarks/ray_datapath.py --n 1000000 --memory-limit 256MB
    PYTHONPATH=. .venv/bin/python benchmarks/ray_datapath.py --n 20000 --executors ray   # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from personahub_core.store import Store

JOBS = ["chess coach", "baker", "marine biologist", "tea farmer", "jazz pianist", "glassblower", "nurse", "surveyor"]
HOBBIES = ["restores clocks", "keeps bees", "runs marathons", "builds kites", "sings in a choir", "paints birds"]


def make_store(path: Path, n: int) -> None:
    """n distinct personas, written by DuckDB itself (the import path is measured elsewhere)."""
    with Store(path) as store:
        store.con.execute(
            """
            INSERT INTO personas (id, persona, origin)
            SELECT md5('persona' || i)[:24],
                   'A ' || list_extract(?, 1 + i % 8) || ' from district ' || i || ' who ' || list_extract(?, 1 + i % 6),
                   'import'
            FROM range(?) t(i)
            """,
            [JOBS, HOBBIES, n],
        )


def peak_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def drive(db: str, executor: str, memory_limit: str) -> None:
    """Child process: run the task as `personahub run` would, then report the summary and own peak RSS."""
    from personahub_core.api import run

    summary = run("math", [], quiet=True, db=db, backend="fake", executor=executor, batch_size=64,
                  memory_limit=memory_limit or None)
    print(json.dumps({"summary": summary, "peak_rss_mb": peak_rss_mb()}))


def duckdb_alone(db: str, n: int, memory_limit: str) -> None:
    """Child process: the limit. n rows about the size of ours (key, task, 400-byte output) inserted into
    a keyed table 50,000 at a time, as the shard merges do; prints its own peak RSS."""
    import duckdb

    con = duckdb.connect(db)
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("CREATE TABLE g (key VARCHAR PRIMARY KEY, task VARCHAR, output VARCHAR, prompt_tokens INTEGER)")
    for start in range(0, n, 50_000):
        con.execute("INSERT INTO g SELECT md5('k' || i)[:24], 'math', repeat(md5(i::VARCHAR), 12) || i, i % 300 "
                    "FROM range(?, ?) t(i)", [start, min(start + 50_000, n)])
    con.close()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def baseline(folder: Path, n: int, memory_limit: str) -> float:
    db = folder / "bare.duckdb"
    result = subprocess.run([sys.executable, __file__, "_duckdb", str(db), str(n), memory_limit],
                            capture_output=True, text=True, check=True)
    db.unlink()
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def measure(base: Path, folder: Path, executor: str, memory_limit: str) -> dict:
    db = folder / f"{executor}.duckdb"
    shutil.copy(base, db)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "_drive", str(db), executor, memory_limit],
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{executor} run failed: {result.stderr.strip().splitlines()[-1:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    s = report["summary"]
    with Store(db, read_only=True) as store:
        rows = store.count("generations")
    db.unlink()
    return {"items": s["items_done"] + s["items_failed"], "rows": rows, "wall": wall,
            "items_per_s": (s["items_done"] + s["items_failed"]) / wall, "peak_rss_mb": report["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="personas at the larger size (the smaller is n/10)")
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory limit of the store, e.g. 256MB "
                        "(default: DuckDB's own)")
    args = parser.parse_args()
    executors = args.executors.split(",")
    sizes = [max(1, args.n // 10), args.n]
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="ray_datapath_") as tmp:
        folder = Path(tmp)
        for n in sizes:
            base = folder / f"personas_{n}.duckdb"
            make_store(base, n)
            line = []
            for executor in executors:
                r = results[executor, n] = measure(base, folder, executor, args.memory_limit)
                assert r["rows"] == n == r["items"], f"{executor} at {n}: {r['rows']} rows for {r['items']} items"
                line.append(f"{executor:>5}: {r['items_per_s']:7,.0f} items/s ({r['wall']:6.1f} s), "
                            f"driver peak RSS {r['peak_rss_mb']:5.0f} MB")
            results["duckdb", n] = {"peak_rss_mb": baseline(folder, n, args.memory_limit)}
            line.append(f"DuckDB alone, same rows keyed: peak RSS {results['duckdb', n]['peak_rss_mb']:5.0f} MB")
            print(f"n={n:>9,}   " + "   |   ".join(line), flush=True)
            base.unlink()
    small, large = sizes
    for executor in [*executors, "duckdb"]:
        a, b = results[executor, small], results[executor, large]
        per_item = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024**2 / (large - small)
        print(f"{executor:>5}: driver peak RSS grows {per_item:,.0f} bytes per item from n={small:,} to n={large:,}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_drive"]:
        drive(*sys.argv[2:5])
    elif sys.argv[1:2] == ["_duckdb"]:
        duckdb_alone(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()
