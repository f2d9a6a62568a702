"""Deduplication benchmark: our MinHash task (through DuckDB) beside datasketch and rensa, and the
bucketed embedding dedup beside brute force. Figures only; nothing here is asserted.

    .venv/bin/python benchmarks/dedup.py                  # 100k personas, all methods, 100k vectors
    .venv/bin/python benchmarks/dedup.py --bandings 21x6,16x8,25x5 --vectors 0   # banding choices
    .venv/bin/python benchmarks/dedup.py --n 1000000 --methods ours --no-truth --repeat 1   # the memory check
    .venv/bin/python benchmarks/dedup.py --data repetitive --n 200000 --methods ours --no-truth --repeat 1 --vectors 0

Each method runs in its own process on the same seeded corpus (written once to Parquet), so peak RSS
(VmHWM) is its own, --repeat times interleaved; the fastest run counts. Recall and precision are measured against the exact set of pairs at Jaccard >= 0.9
(prefix filtering, no sampling): recall = share of the personas that exact keep-earliest drops that
the method drops; wrong drops = dropped personas with no kept partner at >= 0.9; pair precision =
share of (dropped, duplicate-of) pairs really at >= 0.9. Needs `pip install datasketch rensa`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup_data  # noqa: E402

THRESHOLD, NUM_PERM = 0.9, 128


def peak_mb() -> float:
    """This process's peak resident memory. On Linux from VmHWM: ru_maxrss of a child process also
    counts its parent's resident memory at the fork (the benchmark's parent holds the corpus)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers: one method each, in a fresh process --------------------------------------------------
def run_ours(corpus: Path, out: Path, banding: str) -> dict:
    from personahub_core.api import run_in_store
    from personahub_core.plugins import get_registry
    from personahub_core.settings import load_settings
    from personahub_core.store import Store
    from personahub_minhash import MinHashDeduplicator

    bands, rows = (int(x) for x in banding.split("x"))
    db = out.with_suffix(".duckdb")
    for old in (db, db.with_suffix(".duckdb.wal")):  # a fresh store for every repeat
        old.unlink(missing_ok=True)
    with Store(db) as store:
        store.con.execute("SET memory_limit = '256MB'")  # as `personahub ingest` does: appending needs little
        store.con.execute("INSERT INTO personas (id, persona, origin) SELECT printf('b%09d', k), persona, 'import' "
                          f"FROM read_parquet('{corpus}') ORDER BY k")
        store.con.execute("RESET memory_limit")
        loaded_mb = peak_mb()
        settings = load_settings(db=db)
        task = MinHashDeduplicator(MinHashDeduplicator.Options(bands=bands, rows=rows))
        get_registry()  # the command loads the plugins before it runs anything: not the task's time
        started = time.perf_counter()
        summary = run_in_store(task, store, settings, quiet=True)
        seconds = time.perf_counter() - started
        marked = store.query("SELECT p.seq, d.seq FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                             "JOIN personas d ON d.id = m.duplicate_of")
        n = store.count("personas")
    dup = np.full(n, -1, dtype=np.int64)
    for k, partner in marked:
        dup[k - 1] = partner - 1
    np.save(out, dup)
    found = re.search(r"(\d+) band matches in (\d+) slices, (\d+) past", summary["notes"][-1])
    return {"seconds": seconds, "loaded_mb": loaded_mb, "band_matches": int(found[1]), "slices": int(found[2]),
            "checked": int(found[3])}


def texts_of(corpus: Path) -> list[str]:
    return pq.read_table(corpus).column("persona").to_pylist()


def run_datasketch(corpus: Path, out: Path) -> dict:
    from datasketch import MinHash, MinHashLSH
    from personahub_minhash.engine import shingles

    texts = texts_of(corpus)
    started = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    dup = np.full(len(texts), -1, dtype=np.int64)
    for k, text in enumerate(texts):
        words = shingles(text, 1)
        if not words:
            continue
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([w.encode() for w in words])
        hits = lsh.query(m)
        if hits:  # the usual datasketch loop: a signature match is taken as a duplicate
            dup[k] = min(hits)
        else:
            lsh.insert(k, m)
    seconds = time.perf_counter() - started
    np.save(out, dup)
    return {"seconds": seconds, "bands_rows": list(lsh.b_r) if hasattr(lsh, "b_r") else [lsh.b, lsh.r]}


def run_rensa(corpus: Path, out: Path) -> dict:
    from personahub_minhash.engine import shingles
    from rensa import RMinHash, RMinHashLSH

    texts = texts_of(corpus)
    started = time.perf_counter()
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    dup = np.full(len(texts), -1, dtype=np.int64)
    sets: dict[int, set[str]] = {}
    for k, text in enumerate(texts):
        words = shingles(text, 1)
        if not words:
            continue
        m = RMinHash(NUM_PERM, 42)
        m.update(list(words))
        best, best_sim = -1, 0.0
        for c in lsh.query(m):  # only kept personas are in the index: keep-earliest, exactly checked
            other = sets[c]
            inter = len(words & other)
            sim = inter / (len(words) + len(other) - inter)
            if sim >= THRESHOLD and (sim > best_sim or (sim == best_sim and c < best)):
                best, best_sim = c, sim
        if best >= 0:
            dup[k] = best
        else:
            lsh.insert(k, m)
            sets[k] = words
    seconds = time.perf_counter() - started
    np.save(out, dup)
    return {"seconds": seconds}


WORKERS = {"ours": run_ours, "datasketch": run_datasketch, "rensa": run_rensa}


def in_subprocess(method: str, corpus: Path, workdir: Path, banding: str = "") -> tuple[dict, np.ndarray]:
    out = workdir / f"{method}{banding}.npy"
    command = [sys.executable, __file__, "--worker", method, "--corpus", str(corpus), "--out", str(out)]
    proc = subprocess.run(command + (["--banding", banding] if banding else []), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} {banding} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


# -- scoring ------------------------------------------------------------------------------------------
def score(dup: np.ndarray, sets: list[set[str]], truth: dict[tuple[int, int], float], ideal: np.ndarray) -> dict:
    dropped = dup >= 0
    partners: dict[int, list[int]] = {}
    for i, j in truth:
        partners.setdefault(i, []).append(j)
        partners.setdefault(j, []).append(i)
    wrong = sum(1 for d in np.flatnonzero(dropped).tolist() if not any(not dropped[p] for p in partners.get(d, ())))
    pairs = [(int(d), int(dup[d])) for d in np.flatnonzero(dropped)]
    true_pairs = sum(1 for d, p in pairs if len(sets[d] & sets[p]) / len(sets[d] | sets[p]) >= THRESHOLD)
    should = ideal >= 0
    return {
        "dropped": int(dropped.sum()),
        "recall": float((dropped & should).sum() / max(should.sum(), 1)),
        "wrong_drops": wrong,
        "pair_precision": true_pairs / max(len(pairs), 1),
    }


def minhash_section(args, workdir: Path) -> None:
    make = dedup_data.repetitive if args.data == "repetitive" else dedup_data.corpus
    texts = make(args.n, seed=args.seed)
    corpus = workdir / "corpus.parquet"
    pq.write_table(pa.table({"k": np.arange(len(texts)), "persona": texts}), corpus)
    sets = truth = ideal = None
    if not args.no_truth:
        from personahub_core.dedup import keep_earliest
        from personahub_minhash.engine import shingles

        started = time.perf_counter()
        sets = [shingles(t, 1) for t in texts]
        exact = dedup_data.exact_jaccard_pairs_by_bitmask if args.data == "repetitive" else dedup_data.exact_jaccard_pairs
        truth = exact(sets, THRESHOLD)
        i = np.array([p[0] for p in truth], dtype=np.int64)
        j = np.array([p[1] for p in truth], dtype=np.int64)
        ideal, _ = keep_earliest(len(texts), i, j, np.array(list(truth.values())))
        print(f"corpus: {args.n} {args.data} personas (seed {args.seed}); {len(truth)} pairs at Jaccard >= {THRESHOLD}; "
              f"exact keep-earliest drops {int((ideal >= 0).sum())} (ground truth in {time.perf_counter() - started:.1f} s)")
    del texts
    header = (f"{'method':<38} {'docs/s':>9} {'seconds':>8} {'peak MB':>8} {'dropped':>8} {'recall':>7} {'wrong':>6} "
              f"{'pair prec':>9}   {'each run (s)':>14}   {'band matches':>12} {'checked':>8}")
    print(header)
    print("-" * len(header))
    labels = {"datasketch": "datasketch MinHashLSH (default b,r)", "rensa": "rensa 16 bands + exact check"}
    runs = [("ours", b) for b in args.bandings] if "ours" in args.methods else []
    runs += [(m, "") for m in args.methods if m != "ours"]
    # Repeats interleaved, so the other jobs on the machine weigh on every method alike; the
    # fastest run of each counts, and its marks are compared across runs (they must not change).
    results: dict[tuple[str, str], list[tuple[dict, np.ndarray]]] = {run: [] for run in runs}
    for _ in range(args.repeat):
        for method, banding in runs:
            results[(method, banding)].append(in_subprocess(method, corpus, workdir, banding))
    for (method, banding), done in results.items():
        info = min((i for i, _ in done), key=lambda i: i["seconds"])
        dup = done[0][1]
        label = f"ours: {banding} + bounds + exact, DuckDB" if method == "ours" else labels[method]
        line = f"{label:<38} {args.n / info['seconds']:>9.0f} {info['seconds']:>8.2f} " \
               f"{max(i['peak_mb'] for i, _ in done):>8.0f}"
        if truth is not None:
            s = score(dup, sets, truth, ideal)
            line += f" {s['dropped']:>8} {s['recall']:>7.4f} {s['wrong_drops']:>6} {s['pair_precision']:>9.4f}"
        else:
            line += f" {int((dup >= 0).sum()):>8} {'':>7} {'':>6} {'':>9}"
        each = "/".join(f"{i['seconds']:.1f}" for i, _ in done)
        line += f"   {each:>14}"
        if any(not np.array_equal(dup, other) for _, other in done[1:]):
            line += "   MARKS DIFFER BETWEEN RUNS"
        if method == "ours":
            line += f"   {info['band_matches']:>12} {info['checked']:>8}   ({info['slices']} slices; " \
                    f"{info['loaded_mb']:.0f} MB after loading the store)"
        if "bands_rows" in info:
            line += f"   (b, r) = {tuple(info['bands_rows'])}"
        print(line, flush=True)


def embedding_section(args) -> None:
    from personahub_core.vector_search import bucket_count, similar_pairs, train_buckets

    n, dim = args.vectors, args.dim
    v = dedup_data.vectors(n, dim=dim, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    sample = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
    started = time.perf_counter()
    sims = v[sample] @ v.T
    brute_seconds = (time.perf_counter() - started) * n / len(sample) / 2  # all pairs, each once
    qi, mj = np.nonzero(sims >= THRESHOLD)
    a, b = sample[qi], mj
    keep = a != b
    truth = set(zip(np.minimum(a, b)[keep].tolist(), np.maximum(a, b)[keep].tolist()))
    print(f"\nembedding dedup: {n} vectors of {dim} dimensions, cosine >= {THRESHOLD}; brute force checked on "
          f"{len(sample)} sampled vectors ({len(truth)} true pairs touch them); "
          f"brute force over all pairs ~{brute_seconds:.1f} s (extrapolated)")
    print(f"{'path':<34} {'seconds':>8} {'buckets':>8} {'recall':>8} {'false pairs':>11}")
    started = time.perf_counter()
    centroids = train_buckets(v, bucket_count(n))
    train_seconds = time.perf_counter() - started
    in_sample = np.zeros(n, dtype=bool)
    in_sample[sample] = True
    for probes in (1, 2, 4):
        started = time.perf_counter()
        i, j, s = similar_pairs(v, 0, centroids, probes, THRESHOLD)
        seconds = time.perf_counter() - started + train_seconds
        touched = in_sample[i] | in_sample[j]
        found = set(zip(i[touched].tolist(), j[touched].tolist()))
        recall = len(found & truth) / max(len(truth), 1)
        print(f"{f'buckets, {probes} probe(s)':<34} {seconds:>8.2f} {len(centroids):>8} {recall:>8.4f} {len(found - truth):>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="personas")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("personas", "repetitive"), default="personas",
                        help="persona-like texts, or the cliff case: 13 roles and a 20-word vocabulary")
    parser.add_argument("--methods", default="ours,datasketch,rensa")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each method (the fastest counts)")
    parser.add_argument("--bandings", default=None, help="bands x rows for ours, comma-separated (default: the task's)")
    parser.add_argument("--no-truth", action="store_true", help="skip the exact ground truth (large --n)")
    parser.add_argument("--vectors", type=int, default=100_000, help="vectors for the embedding section (0: skip)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--sample", type=int, default=2000, help="vectors checked by brute force")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--banding", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        extra = [args.banding] if args.worker == "ours" else []
        info = WORKERS[args.worker](Path(args.corpus), Path(args.out), *extra)
        print(json.dumps({**info, "peak_mb": peak_mb()}))
        return
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.bandings is None:
        from personahub_minhash import Options

        args.bandings = f"{Options().bands}x{Options().rows}"
    args.bandings = [b.strip() for b in args.bandings.split(",") if b.strip()]
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        if args.n:
            minhash_section(args, Path(tmp))
    if args.vectors:
        embedding_section(args)


if __name__ == "__main__":
    main()
