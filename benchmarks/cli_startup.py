"""CPU time (user + sys) of ``personahub --help``, median of N runs, beside a baseline install's.

The baseline is another checkout's ``personahub`` (e.g. main's venv), run interleaved with this one so
both see the same machine load. Also says whether numpy or any plugin module was imported for the help.

    python benchmarks/cli_startup.py --baseline /work/main/.venv/bin/personahub --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

PLUGIN_PACKAGES = ("personahub_math", "personahub_minhash", "personahub_embedding", "personahub_import",
                   "personahub_npc", "personahub_tools", "personahub_verify", "personahub_quality",
                   "personahub_reasoning", "personahub_knowledge", "personahub_instructions",
                   "personahub_persona_to_persona", "personahub_text_to_persona")


def cpu_seconds(command: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported(executable: str) -> list[str]:
    """numpy and plugin modules among what ``--help`` imports (``python -X importtime``)."""
    python = str(Path(executable).with_name("python"))
    code = "import sys; sys.argv = ['personahub', '--help']; from personahub_core.cli import main; main()"
    result = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    names = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if "|" in line}
    return sorted(n for n in names if n == "numpy" or n.split(".")[0] in PLUGIN_PACKAGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the baseline's personahub executable")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    this = str(Path(sys.executable).with_name("personahub"))
    times: dict[str, list[float]] = {args.baseline: [], this: []}
    for _ in range(args.runs):
        for executable in times:
            times[executable].append(cpu_seconds([executable, "--help"]))
    for label, executable in (("baseline", args.baseline), ("this", this)):
        found = imported(executable)
        print(f"{label:8} {executable}: median {statistics.median(times[executable]):.3f} s CPU "
              f"(runs: {', '.join(f'{t:.3f}' for t in times[executable])}); "
              f"numpy or plugin modules imported: {len(found)} {found[:6]}")


if __name__ == "__main__":
    main()
