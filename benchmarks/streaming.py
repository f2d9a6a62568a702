"""The streaming driver's memory and speed beside an earlier revision's, in the same session.

`run --plugin math --backend fake` over N personas, each version in a fresh process on a fresh copy of
the same store, both at once (so both see the same load): peak RSS (the child's own, from wait4) and
items/s end to end. The earlier revision's ``personahub_core`` is exported from git (``--baseline``,
default ``main``) and put first on the child's path; the plugins are the installed ones (this change does not touch them). The fake backend answers at
once, so this is the cost of everything but the model: selection, keys, driver, cache, writer.

Targets (issue #20): peak RSS <= 700 MB at 10^6 personas, items/s not lower than the baseline's.
On a shared machine expect noise; items per CPU-second is the steadier figure.

    .venv/bin/python benchmarks/streaming.py --n 100000
    .venv/bin/python benchmarks/streaming.py --n 1000000 --baseline main
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ray_datapath import make_store  # the same synthetic personas as the Ray data path benchmark

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import sys
import personahub_core
print(personahub_core.__file__, flush=True)
from personahub_core.cli import main
sys.argv = ["personahub", "run", "--plugin", "math", "--backend", "fake", "--db", sys.argv[1], "--json", "-q"]
main()
"""


def export_revision(rev: str, into: Path) -> Path:
    """``personahub_core`` as it was at ``rev``, in a folder of its own."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "personahub_core"], capture_output=True,
                             check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def start(db: Path, path_first: Path | None) -> subprocess.Popen:
    """One run in a fresh process, on its own copy of the store."""
    env = dict(os.environ)
    if path_first is not None:
        env["PYTHONPATH"] = f"{path_first}{os.pathsep}{env.get('PYTHONPATH', '')}"
    # Started in the store's folder: from the repository, `python -c` would import this tree's code first.
    return subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=db.parent)


def finish(proc: subprocess.Popen, started: float) -> dict:
    """Items/s, wall and CPU seconds, peak RSS (the child's own, from wait4), and which code ran."""
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"a run failed (status {status})")
    lines = out.strip().splitlines()
    summary = json.loads(lines[-1])
    items = summary["items_done"] + summary["items_failed"]
    return {"code": lines[0], "items": items, "seconds": seconds, "items_per_s": items / seconds,
            "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="personas the math run goes over")
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streaming-") as tmp:
        tmp = Path(tmp)
        base_code = export_revision(args.baseline, tmp / "baseline")
        make_store(tmp / "personas.duckdb", args.n)
        versions = {f"baseline ({args.baseline})": base_code, "this tree": None}
        procs = {}
        for i, (label, path_first) in enumerate(versions.items()):
            (tmp / str(i)).mkdir()
            shutil.copy(tmp / "personas.duckdb", tmp / str(i) / "store.duckdb")
        started = time.perf_counter()
        # Both at once, so that both see the same load on a shared machine.
        for i, (label, path_first) in enumerate(versions.items()):
            procs[label] = start(tmp / str(i) / "store.duckdb", path_first)
        with ThreadPoolExecutor(len(procs)) as pool:  # each child's wall time ends when it does
            done = {label: pool.submit(finish, proc, started) for label, proc in procs.items()}
        results = {label: future.result() for label, future in done.items()}
    print(f"run --plugin math --backend fake over {args.n:,} personas (both versions at once, one run each)\n")
    print(f"{'version':<22} {'items/s':>9} {'seconds':>8} {'CPU-s':>7} {'items/CPU-s':>12} {'peak RSS MB':>12}   code")
    for label, r in results.items():
        print(f"{label:<22} {r['items_per_s']:>9,.0f} {r['seconds']:>8.1f} {r['cpu']:>7.1f} "
              f"{r['items'] / r['cpu']:>12,.0f} {r['peak_mb']:>12,.0f}   {r['code']}")
    ours = results["this tree"]
    base = results[f"baseline ({args.baseline})"]
    print(f"\npeak RSS <= 700 MB: {'PASS' if ours['peak_mb'] <= 700 else 'MISS'}; against the baseline: "
          f"items/s {ours['items_per_s'] / base['items_per_s']:.2f}x, items per CPU-second "
          f"{ours['cpu'] and (ours['items'] / ours['cpu']) / (base['items'] / base['cpu']):.2f}x "
          "(on a shared machine the steadier figure)")


if __name__ == "__main__":
    main()
