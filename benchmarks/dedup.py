"""Deduplication benchmark: our MinHash task (through DuckDB) beside datasketch and rensa, and the
bucketed embedding dedup beside brute force. Figures only; nothing here is asserted.

    .venv/bin/python benchmarks/dedup.py                  # 100k personas, all methods, 100k vectors
    .venv/bin/python benchmarks/dedup.py --n 1000000 --methods ours --no-truth   # the memory check

Each method runs in its own process on the same seeded corpus (written once to Parquet), so peak RSS
is its own. Recall and precision are measured against the exact set of pairs at Jaccard >= 0.9
(prefix filtering, no sampling): recall = share of the personas that exact keep-earliest drops that
the method drops; wrong drops = dropped personas with no kept partner at >= 0.9; pair precision =
share of (dropped, duplicate-of) pairs really at >= 0.9. Needs `pip install datasketch rensa`.
"""

from __future__ import annotations

import argparse
import json
import os
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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers: one method each, in a fresh process --------------------------------------------------
def run_ours(corpus: Path, out: Path) -> dict:
    from personahub_core.api import run_in_store
    from personahub_core.settings import load_settings
    from personahub_core.store import Store
    from personahub_minhash import MinHashDeduplicator

    db = out.with_suffix(".duckdb")
    with Store(db) as store:
        store.con.execute("INSERT INTO personas (id, persona, origin) SELECT printf('b%09d', k), persona, 'import' "
                          f"FROM read_parquet('{corpus}') ORDER BY k")
        settings = load_settings(db=db)
        started = time.perf_counter()
        run_in_store(MinHashDeduplicator(), store, settings, quiet=True)
        seconds = time.perf_counter() - started
        rows = store.query("SELECT p.seq, d.seq FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
                           "JOIN personas d ON d.id = m.duplicate_of")
        n = store.count("personas")
    dup = np.full(n, -1, dtype=np.int64)
    for k, partner in rows:
        dup[k - 1] = partner - 1
    np.save(out, dup)
    return {"seconds": seconds}


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


def in_subprocess(method: str, corpus: Path, workdir: Path) -> tuple[dict, np.ndarray]:
    out = workdir / f"{method}.npy"
    proc = subprocess.run([sys.executable, __file__, "--worker", method, "--corpus", str(corpus), "--out", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-2000:]}")
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
    texts = dedup_data.corpus(args.n, seed=args.seed)
    corpus = workdir / "corpus.parquet"
    pq.write_table(pa.table({"k": np.arange(len(texts)), "persona": texts}), corpus)
    sets = truth = ideal = None
    if not args.no_truth:
        from personahub_core.dedup import keep_earliest
        from personahub_minhash.engine import shingles

        started = time.perf_counter()
        sets = [shingles(t, 1) for t in texts]
        truth = dedup_data.exact_jaccard_pairs(sets, THRESHOLD)
        i = np.array([p[0] for p in truth], dtype=np.int64)
        j = np.array([p[1] for p in truth], dtype=np.int64)
        ideal, _ = keep_earliest(len(texts), i, j, np.array(list(truth.values())))
        print(f"corpus: {args.n} personas (seed {args.seed}); {len(truth)} pairs at Jaccard >= {THRESHOLD}; "
              f"exact keep-earliest drops {int((ideal >= 0).sum())} (ground truth in {time.perf_counter() - started:.1f} s)")
    del texts
    header = f"{'method':<34} {'docs/s':>9} {'seconds':>8} {'peak MB':>8} {'dropped':>8} {'recall':>7} {'wrong':>6} {'pair prec':>9}"
    print(header)
    print("-" * len(header))
    labels = {"ours": "ours: numpy 16x8 + exact, DuckDB", "datasketch": "datasketch MinHashLSH (default b,r)",
              "rensa": "rensa 16 bands + exact check"}
    for method in args.methods:
        info, dup = in_subprocess(method, corpus, workdir)
        line = f"{labels[method]:<34} {args.n / info['seconds']:>9.0f} {info['seconds']:>8.2f} {info['peak_mb']:>8.0f}"
        if truth is not None:
            s = score(dup, sets, truth, ideal)
            line += f" {s['dropped']:>8} {s['recall']:>7.4f} {s['wrong_drops']:>6} {s['pair_precision']:>9.4f}"
        else:
            line += f" {int((dup >= 0).sum()):>8}"
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
    parser.add_argument("--methods", default="ours,datasketch,rensa")
    parser.add_argument("--no-truth", action="store_true", help="skip the exact ground truth (large --n)")
    parser.add_argument("--vectors", type=int, default=100_000, help="vectors for the embedding section (0: skip)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--sample", type=int, default=2000, help="vectors checked by brute force")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        info = WORKERS[args.worker](Path(args.corpus), Path(args.out))
        print(json.dumps({**info, "peak_mb": peak_mb()}))
        return
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        if args.n:
            minhash_section(args, Path(tmp))
    if args.vectors:
        embedding_section(args)


if __name__ == "__main__":
    main()
