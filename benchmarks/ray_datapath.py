"""The Ray data path: `run --plugin math --backend fake` under `--executor ray` (actors write Parquet
shards, the store merges them) beside `--executor local`, on the same personas, at two sizes.

For each size and executor it prints items/s end to end (Ray's start included) and the driver's peak
RSS (VmHWM of the process that runs the command; Ray's own processes and the actors are not in it).
Under Ray the rows never pass through the driver, so its peak should not grow with the row count
beyond the work item list the runner builds (what grows is printed as bytes per item).

    PYTHONPATH=. .venv/bin/python benchmarks/ray_datapath.py --n 1000000
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


def drive(db: str, executor: str) -> None:
    """Child process: run the task as `personahub run` would, then report the summary and own peak RSS."""
    from personahub_core.api import run

    summary = run("math", [], quiet=True, db=db, backend="fake", executor=executor, batch_size=64)
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    print(json.dumps({"summary": summary, "peak_rss_mb": peak_kb / 1024}))


def measure(base: Path, folder: Path, executor: str) -> dict:
    db = folder / f"{executor}.duckdb"
    shutil.copy(base, db)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "_drive", str(db), executor],
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
    args = parser.parse_args()
    executors = args.executors.split(",")
    sizes = [max(1, args.n // 10), args.n]
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="ray_datapath_") as tmp:
        folder = Path(tmp)
        for n in sizes:
            base = folder / f"personas_{n}.duckdb"
            make_store(base, n)
            for executor in executors:
                r = results[executor, n] = measure(base, folder, executor)
                assert r["rows"] == n == r["items"], f"{executor} at {n}: {r['rows']} rows for {r['items']} items"
                print(f"{executor:>5} n={n:>9,}: {r['items_per_s']:8,.0f} items/s ({r['wall']:7.1f} s wall), "
                      f"driver peak RSS {r['peak_rss_mb']:7.0f} MB", flush=True)
            base.unlink()
    small, large = sizes
    for executor in executors:
        a, b = results[executor, small], results[executor, large]
        per_item = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1024**2 / (large - small)
        print(f"{executor:>5}: driver peak RSS grows {per_item:,.0f} bytes per item from n={small:,} to n={large:,}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_drive"]:
        drive(*sys.argv[2:4])
    else:
        main()
