"""The near-copy check of math and reasoning problems (``prompting.copy_similarity``): how well it
tells a demonstration with its numbers, names or a few words changed from a new problem.

Two hand-written lists, each of near-copies of the plugins' demonstrations and of distinct problems on
the same topics: the threshold (``prompting.NEAR_COPY``) was chosen on the calibration list, and the
held-out list was written after it and not used to tune anything. For each list it prints, beside the
old rule alone (most word trigrams shared), the share of copies caught and of distinct problems
wrongly rejected, and the score range of each label.

    python benchmarks/copy_check.py
"""

from __future__ import annotations

import json
from pathlib import Path

from personahub_core.prompting import NEAR_COPY, _copied_from, _trigrams, copy_similarity, demonstrations

DATA = Path(__file__).parent / "data"
DEMOS = {task: [d["problem"] for d in demonstrations(f"personahub_{task}")] for task in ("math", "reasoning")}


def score(row: dict) -> tuple[float, bool]:
    """The text's highest similarity to a demonstration of its task, and whether the old rule caught it."""
    demos = DEMOS[row["task"]]
    return (max(copy_similarity(row["text"], d) for d in demos),
            any(_copied_from(_trigrams(row["text"]), d) for d in demos))


def report(name: str) -> dict:
    rows = [json.loads(line) for line in (DATA / f"copy_check_{name}.jsonl").read_text().splitlines() if line]
    scored = [(r["label"], *score(r)) for r in rows]
    out = {"list": name}
    for label in ("copy", "distinct"):
        mine = [(s, old) for lab, s, old in scored if lab == label]
        out[label] = {"n": len(mine), "min": round(min(s for s, _ in mine), 3), "max": round(max(s for s, _ in mine), 3),
                      "rejected": sum(s >= NEAR_COPY or old for s, old in mine),
                      "rejected_by_old_rule": sum(old for _, old in mine)}
    return out


if __name__ == "__main__":
    print(f"threshold NEAR_COPY = {NEAR_COPY} (Jaccard of character 3-grams)")
    for name in ("calibration", "heldout"):
        r = report(name)
        c, d = r["copy"], r["distinct"]
        print(f"{name:12s} copies caught {c['rejected']}/{c['n']} (old rule {c['rejected_by_old_rule']}/{c['n']}), "
              f"score {c['min']}-{c['max']}; distinct rejected {d['rejected']}/{d['n']} "
              f"(old rule {d['rejected_by_old_rule']}/{d['n']}), score {d['min']}-{d['max']}")
