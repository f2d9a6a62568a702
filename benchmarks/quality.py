"""Output quality of the six synthesizers with the default model, on the bundled sample personas.

For each task (and prompting mode) it runs ``--limit N`` on the first N personas of
sample_data/personas.jsonl in a fresh store, then reports:

    parsed    share of items whose answer parsed as JSON and validated against the task's schema
              (structured tasks: npc, tools) or was not cut off (free-text tasks)
    ok        share of items also passing the quality checks (no repeats, no copied demonstration ...),
              after the core's one retry
    words     mean length of ``synthesized text`` in words
    d-1, d-2  distinct-1 / distinct-2: unique word unigrams / bigrams over all of a task's outputs
    tok/s     completion tokens per second of the run
    reject    the commonest rejection reason

The baseline printed beside each task is our hand-written demonstrations for it, measured the same
way (distinct-n grows as samples shrink, so compare runs of equal N, and read the baseline as a guide).

    python benchmarks/quality.py --n 8
    python benchmarks/quality.py --n 4 --tasks math,tools --modes zero-shot,persona-few-shot
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from personahub_core.prompting import demonstrations
from personahub_core.sample_data import personas_path
from personahub_core.store import Store
from personahub_core.testing import run_task

TASKS = ["math", "reasoning", "instructions", "knowledge", "npc", "tools"]

# The text each task's demonstrations would have as their "synthesized text".
DEMO_TEXT = {
    "math": lambda d: d["problem"],
    "reasoning": lambda d: d["problem"],
    "instructions": lambda d: d["conversation"][0]["content"],
    "knowledge": lambda d: f"{d['title']}\n\n{d['body']}",
    "npc": lambda d: "\n".join(f"{k}: {v}" for k, v in d["npc"].items()),
    "tools": lambda d: json.dumps(d["tool"], ensure_ascii=False),
}


def distinct(texts: list[str], n: int) -> float:
    grams = [tuple(words[i:i + n]) for words in (t.lower().split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def describe(texts: list[str]) -> dict:
    return {
        "words": sum(len(t.split()) for t in texts) / len(texts) if texts else 0.0,
        "d1": distinct(texts, 1),
        "d2": distinct(texts, 2),
    }


# Rejections for answers that did not parse or validate; every other rejection is a quality check.
PARSE_FAILURES = ("invalid ", "runaway answer")


def measure(task: str, mode: str, n: int, folder: Path, batch_size: int | None) -> dict:
    db = folder / f"{task}-{mode}.duckdb"
    personas = folder / "personas.jsonl"
    run_task("import", ["--input", str(personas)], db=db)
    summary = run_task(task, ["--mode", mode], db=db, backend="llama-cpp", limit=n, cache=False, batch_size=batch_size)
    with Store(db, read_only=True) as store:
        rows = store.query_dicts("SELECT status, output, error FROM generations WHERE task = ?", [task])
    texts = [json.loads(r["output"])["synthesized text"] for r in rows if r["status"] == "ok"]
    reasons = Counter(r["error"] for r in rows if r["status"] != "ok")
    unparsed = sum(count for reason, count in reasons.items() if (reason or "").startswith(PARSE_FAILURES))
    return {
        "task": task, "mode": mode, "items": len(rows),
        "parsed": 1 - unparsed / len(rows) if rows else 0.0, "ok": len(texts) / len(rows) if rows else 0.0,
        **describe(texts), "tok_s": summary["completion_tokens_per_second"], "seconds": summary["seconds"],
        "reject": reasons.most_common(1)[0][0] if reasons else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="personas per task (default 8)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated synthesizers")
    parser.add_argument("--modes", default="persona-few-shot", help="comma-separated prompting modes")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences decoded together (default: the setting)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line per measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = personas_path().read_text(encoding="utf-8").splitlines()[: args.n]
        (folder / "personas.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        header = f"{'task':<13}{'mode':<18}{'items':>6}{'parsed':>8}{'ok':>7}{'words':>8}{'d-1':>7}{'d-2':>7}{'tok/s':>8}  commonest reject"
        print(header)
        print("-" * len(header))
        for task in args.tasks.split(","):
            demos = demonstrations(f"personahub_{task}")  # each synthesizer plugin ships its own
            base = describe([DEMO_TEXT[task](d) for d in demos])
            print(f"{task:<13}{'(demonstrations)':<18}{len(demos):>6}{'':>8}{'':>7}"
                  f"{base['words']:>8.1f}{base['d1']:>7.2f}{base['d2']:>7.2f}")
            for mode in args.modes.split(","):
                m = measure(task, mode, args.n, folder, args.batch_size)
                print(f"{'':<13}{mode:<18}{m['items']:>6}{m['parsed']:>8.0%}{m['ok']:>7.0%}{m['words']:>8.1f}{m['d1']:>7.2f}{m['d2']:>7.2f}"
                      f"{m['tok_s']:>8.1f}  {m['reject'][:60]}", flush=True)
                if args.json:
                    print(json.dumps(m))


if __name__ == "__main__":
    main()
