"""Verification figures: the answer comparer on a held-out set, then the default model's verdicts on its
own math problems for the bundled sample personas.

1. The comparer (``personahub_verify.answers.same_answer``) was written against the pairs in
   plugins/verify/tests/test_answers.py (its calibration set). ``benchmarks/answer_pairs.jsonl`` is a
   held-out set of 40 labelled pairs written before the comparer was run on them: its accuracy there,
   with a Wilson interval, and the pairs it gets wrong.
2. In a fresh store: the sample personas imported, ``math`` run with the chosen model, then
   ``verify --task math --k K``, then the two rubric judges in docs/recipes. Printed: the share of
   rows whose k answers agree (pass at 2 of 3), mean agreement, the judges' score histograms, each with
   n and a 95% Wilson interval. The baseline beside the agreement rate is chance agreement of the
   same number of answers drawn from the pooled answers of all rows (a shuffled pairing), measured in
   the same run.

    python benchmarks/verification.py                  # the default model, 40 personas, k=3
    python benchmarks/verification.py --n 10 --k 2 --max-tokens 96 --db verify.duckdb   # keep (and resume) the store
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from personahub_core.report import wilson_interval
from personahub_core.sample_data import personas_path
from personahub_core.store import Store
from personahub_core.testing import run_task
from personahub_verify.answers import majority, same_answer

HERE = Path(__file__).resolve().parent
RUBRICS = [HERE.parent / "docs" / "recipes" / f"rubric-{name}.toml" for name in ("validity", "relevance")]


def rate(k: int, n: int) -> str:
    low, high = wilson_interval(k, n)
    return f"{k}/{n} = {k / n:.3f} [95% CI {low:.3f}-{high:.3f}]" if n else "n = 0"


def comparer_on_held_out() -> None:
    pairs = [json.loads(line) for line in (HERE / "answer_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    wrong = [p for p in pairs if same_answer(p["a"], p["b"]) != p["same"]]
    print(f"answer comparer, held-out pairs: correct {rate(len(pairs) - len(wrong), len(pairs))}")
    for p in wrong:
        print(f"  wrong: {p['a']!r} vs {p['b']!r} (labelled {'same' if p['same'] else 'different'})")


def verdicts(db: Path, task: str) -> list[dict]:
    with Store(db, read_only=True) as store:
        rows = store.query("SELECT output FROM generations WHERE task = ? AND status = 'ok'", [task])
    return [json.loads(r[0]) for r in rows]


def chance_agreement(rows: list[dict], k: int, seed: int = 0) -> float:
    """Pass rate if each row's k answers were drawn at random from all rows' answers."""
    pool = [a for r in rows for a in r["answers"]]
    rng, passed = random.Random(seed), 0
    for _ in rows:
        answer, count = majority(rng.sample(pool, k))
        passed += answer is not None and count / k >= 0.66
    return passed / len(rows) if rows else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="sample personas to use")
    parser.add_argument("--k", type=int, default=3, help="solutions per problem")
    parser.add_argument("--backend", default="llama-cpp")
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="completion tokens per solution of verify (default: 256)")
    parser.add_argument("--db", type=Path, default=None, help="keep the store here; a rerun resumes it")
    args = parser.parse_args()
    comparer_on_held_out()
    model = {"backend": args.backend, **({"model": args.model} if args.model else {})}
    solving = {**model, **({"max_tokens": args.max_tokens} if args.max_tokens else {})}
    with tempfile.TemporaryDirectory() as folder:
        db = args.db or Path(folder) / "verify.duckdb"
        personas = [json.loads(line) for line in personas_path().read_text(encoding="utf-8").splitlines() if line.strip()]
        (Path(folder) / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in personas[: args.n]), encoding="utf-8")
        run_task("import", ["--input", str(Path(folder) / "p.jsonl")], db=db)
        started = time.perf_counter()
        made = run_task("math", db=db, **model)
        print(f"math: {made['items_done']} problems stored, {made['items_failed']} rejected or failed "
              f"({time.perf_counter() - started:.0f} s)")
        started = time.perf_counter()
        run_task("verify", ["--task", "math", "--k", str(args.k)], db=db, **solving)
        rows = verdicts(db, "verify")
        passed = sum(r["passed"] for r in rows)
        answered = sum(a is not None for r in rows for a in r["answers"])
        print(f"verify k={args.k} ({time.perf_counter() - started:.0f} s): rows whose answers agree (>= 0.66): "
              f"{rate(passed, len(rows))}; chance baseline (answers shuffled across rows) "
              f"{chance_agreement(rows, args.k):.3f}")
        print(f"  mean agreement {sum(r['agreement'] for r in rows) / max(len(rows), 1):.3f}; solutions with a "
              f"final answer {rate(answered, len(rows) * args.k)}")
        print(f"  agreement histogram: {dict(sorted(Counter(r['agreement'] for r in rows).items()))}")
        for rubric in RUBRICS:
            started = time.perf_counter()
            summary = run_task(str(rubric), ["--task", "math"], db=db, **model)
            name = rubric.stem
            scored = verdicts(db, name)
            histogram = Counter(r["score"] for r in scored)
            print(f"{name} ({time.perf_counter() - started:.0f} s): {len(scored)} scored, {summary['items_failed']} "
                  f"unanswered; scores {[histogram.get(s, 0) for s in range(1, 6)]} (1..5); score >= 4: "
                  f"{rate(sum(r['passed'] for r in scored), len(scored))}")


if __name__ == "__main__":
    main()
