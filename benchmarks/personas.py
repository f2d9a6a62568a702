"""Personas per second for Text-to-Persona and Persona-to-Persona with the default model, end to end.

Each row is a whole `personahub run` in a fresh store (process start, model load, prompts included),
so the batched path and the `--batch-size 1` baseline are measured the same way in the same run.
Issue target: text-to-persona over two dozen texts at >= 2x the completion tokens/s of --batch-size 1.

    python benchmarks/personas.py --docs 24                      # the plain `run --plugin text-to-persona`
    python benchmarks/personas.py --docs 24 --perspectives read  # one persona per text
    python benchmarks/personas.py --docs 24 --max-chars 300      # shorter texts: less prompt per persona
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

from personahub_core.sample_data import corpus_path

PERSONAHUB = str(Path(sys.executable).parent / "personahub")


def personahub(*args: str, cwd: Path) -> dict:
    out = subprocess.run([PERSONAHUB, *args, "--json", "-q"] if args[0] == "run" else [PERSONAHUB, *args],
                         cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"personahub {' '.join(args)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1]) if args[0] == "run" else {}


def timed_run(cwd: Path, *args: str) -> tuple[dict, float]:
    start = time.perf_counter()
    summary = personahub("run", *args, cwd=cwd)
    return summary, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=24, help="texts from the sample corpus")
    parser.add_argument("--batch-size", type=int, default=16, help="batched path to compare with 1")
    parser.add_argument("--perspectives", default=None,
                        help="text-to-persona's --perspectives, comma separated (default: the plugin's, read,write)")
    parser.add_argument("--max-chars", type=int, default=None,
                        help="cut each text to this many characters (text-to-persona's --max-chars): shorter texts "
                             "leave less prompt to read, which batching cannot speed up")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(corpus_path().read_text().splitlines(keepends=True)[: args.docs]))
        for batch in (1, args.batch_size):
            work = Path(tmp) / f"b{batch}"
            work.mkdir()
            personahub("ingest", str(corpus), cwd=work)
            t2p = ["--max-chars", str(args.max_chars)] if args.max_chars else []
            t2p += ["--perspectives", args.perspectives] if args.perspectives else []
            for task, extra in (("text-to-persona", t2p), ("persona-to-persona", ["--hops", "1"])):
                summary, wall = timed_run(work, "--plugin", task, "--batch-size", str(batch), "--no-cache", *extra)
                rows.append((task, batch, summary, wall))
            shutil.rmtree(work)
    print(f"{'task':<20}{'batch':>6}{'items':>7}{'personas':>10}{'tokens':>8}{'wall s':>8}{'tok/s':>8}{'personas/s':>12}")
    for task, batch, s, wall in rows:
        print(f"{task:<20}{batch:>6}{s['items_done'] + s['items_failed']:>7}{s['personas_added']:>10}"
              f"{s['completion_tokens']:>8}{wall:>8.1f}{s['completion_tokens'] / wall:>8.1f}{s['personas_added'] / wall:>12.2f}")
    for task in ("text-to-persona", "persona-to-persona"):
        single, batched = [(s["completion_tokens"] / w) for t, b, s, w in rows if t == task]
        print(f"{task}: batched / single-stream completion tokens per wall second = {batched / single:.2f}x")


if __name__ == "__main__":
    main()
