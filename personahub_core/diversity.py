"""The paper's diversity study on the user's own data: does persona diversity become output diversity?

    embed (personas of the task's rows, and the rows' outputs)  ──>  persona pairs sampled in
    similarity bins (0.4, 0.6, 0.8, 0.9 +- 0.05)  ──>  per bin: the outputs' cosine similarity
    (mean, std); the persona set on its own (mean pairwise, nearest neighbour); outputs with
    personas against a no-persona baseline (same prompt with the persona removed, same sampling)

Persona vectors go to ``embeddings`` (shared with embedding dedup and search), output vectors to
``output_embeddings``; ``study`` reads only stored vectors, so the report can show it without a model.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa

from .diversity_stats import (NEAR_DUPLICATE, compare, fidelity, near_duplicate_threshold, pair_interval, sample_warnings,
                              significance_sentence, spread_intervals, verdict)
from .errors import UsageError
from .store import OUTPUT_TEXT, Store
from .tasks import Prompt, Synthesizer, WorkItem
from .vector_search import EMBED_BATCH, embed_missing, normalise
from .words import words as words_of

DEFAULT_BINS = (0.4, 0.6, 0.8, 0.9)
DEFAULT_WIDTH = 0.05
MAX_PAIRS_PER_BIN = 1000
MAX_PERSONAS = 2000  # the pair matrix is n^2/2; above this a seeded sample of rows is studied


def baseline_name(task: str) -> str:
    return f"{task}-baseline"


# -- embedding ------------------------------------------------------------------------------------
def embed_task(store: Store, backend, model: str, task: str, progress=None) -> tuple[int, int]:
    """Embed the task's (and its baseline's) outputs and input personas that have no ``model`` vector
    yet; returns (personas embedded, outputs embedded)."""
    personas = embed_missing(store, backend, model, progress=progress, inputs_of=[task])
    missing = store.con.sql(
        f"SELECT g.key, {OUTPUT_TEXT} AS text FROM generations g WHERE g.task IN (?, ?) AND g.status = 'ok' "
        f"AND NOT EXISTS (SELECT 1 FROM output_embeddings o WHERE o.generation_key = g.key AND o.model = ?) "
        f"ORDER BY g.key", params=[task, baseline_name(task), model]).to_arrow_table()
    keys, texts = missing.column("key").to_pylist(), missing.column("text").to_pylist()
    bar = progress.add_task("embedding outputs", total=len(keys), extra="") if progress is not None else None
    for start in range(0, len(keys), EMBED_BATCH):
        batch = [t if t and t.strip() else " " for t in texts[start : start + EMBED_BATCH]]
        vectors = normalise(np.asarray(backend.embed(batch), dtype=np.float32))
        _write_output_vectors(store, keys[start : start + len(batch)], model, vectors)
        if progress is not None:
            progress.update(bar, advance=len(batch))
    return personas, len(keys)


def _write_output_vectors(store: Store, keys: list[str], model: str, vectors: np.ndarray) -> None:
    blobs = pa.array([v.astype("<f4").tobytes() for v in vectors], pa.binary())
    store.con.register("_vectors", pa.table({"key": pa.array(keys, pa.string()), "vector": blobs}))
    try:
        store.con.execute("INSERT INTO output_embeddings (generation_key, model, dim, vector) "
                          "SELECT key, ?, ?, vector FROM _vectors", [model, vectors.shape[1]])
    finally:
        store.con.unregister("_vectors")


def _matrix(blobs: list[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1)


def study_models(store: Store) -> dict[str, str]:
    """For each task with output vectors, the embedding model with the most of them."""
    if not store.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'output_embeddings'"):
        return {}  # a store opened read-only before its migration to this version
    rows = store.query(
        "SELECT g.task, o.model, count(*) AS n FROM output_embeddings o JOIN generations g ON g.key = o.generation_key "
        "GROUP BY 1, 2 ORDER BY 1, n DESC")
    models: dict[str, str] = {}
    for task, model, _ in rows:
        models.setdefault(task, model)
    return models


# -- the study ------------------------------------------------------------------------------------
def study(store: Store, task: str, model: str, bins: tuple[float, ...] = DEFAULT_BINS, width: float = DEFAULT_WIDTH,
          seed: int = 0, max_pairs: int = MAX_PAIRS_PER_BIN) -> dict[str, Any]:
    """The study from stored vectors only. Rows whose persona or output has no ``model`` vector are left out."""
    rng = np.random.default_rng(seed)
    rows = store.query(
        f"SELECT g.key, pe.vector, o.vector, {OUTPUT_TEXT} FROM generations g "
        "JOIN (SELECT persona_id, any_value(vector) AS vector FROM embeddings WHERE model = ? GROUP BY 1) pe "
        "  ON pe.persona_id = g.input_id "
        "JOIN (SELECT generation_key, any_value(vector) AS vector FROM output_embeddings WHERE model = ? GROUP BY 1) o "
        "  ON o.generation_key = g.key "
        "WHERE g.task = ? AND g.status = 'ok' ORDER BY g.key", [model, model, task])
    sampled = len(rows) > MAX_PERSONAS
    if sampled:
        rows = [rows[i] for i in sorted(rng.choice(len(rows), MAX_PERSONAS, replace=False))]
    personas, outputs = _matrix([r[1] for r in rows]), _matrix([r[2] for r in rows])
    texts = [r[3] or "" for r in rows]
    result: dict[str, Any] = {"task": task, "model": model, "rows": len(rows), "sampled": sampled,
                              "width": width, "bins": [], "personas": persona_set(personas)}
    n = len(rows)
    i, j = np.triu_indices(n, 1) if n > 1 else (np.zeros(0, np.int64), np.zeros(0, np.int64))
    persona_sims = (personas @ personas.T)[i, j] if len(i) else np.zeros(0, np.float32)
    for centre in bins:
        chosen = np.flatnonzero(np.abs(persona_sims - centre) <= width + 1e-9)
        if len(chosen) > max_pairs:
            chosen = np.sort(rng.choice(chosen, max_pairs, replace=False))
        sims = np.einsum("ij,ij->i", outputs[i[chosen]], outputs[j[chosen]]) if len(chosen) else np.zeros(0)
        result["bins"].append({
            "persona_similarity": centre,
            "pairs": int(len(chosen)),
            "output_similarity": {"mean": _round(sims.mean()), "std": _round(sims.std()),
                                  "interval": pair_interval(sims, rng)} if len(chosen)
            else {"mean": None, "std": None},
            "persona_similarity_mean": _round(persona_sims[chosen].mean()) if len(chosen) else None,
        })
    calibrated = near_duplicate_threshold(model)
    near = calibrated or NEAR_DUPLICATE
    result["near_duplicate_threshold"] = near
    result["outputs"] = output_spread(outputs, texts, rng, near)
    result["baseline"] = _baseline_comparison(store, task, model, outputs, texts, rng, near)
    result["fidelity"] = fidelity(personas, outputs, rng)
    result["warnings"] = sample_warnings(n, result["bins"], result["baseline"])
    if calibrated is None:  # a threshold belongs to its model: 0.9 may mean nothing for these vectors
        result["warnings"].append(f"no calibrated near-duplicate threshold for {model}: the near-duplicate share "
                                  f"counts cosine >= {NEAR_DUPLICATE}, the paper's figure for another model")
    result["verdict"] = verdict(result)
    return result


def persona_set(vectors: np.ndarray) -> dict[str, Any]:
    """How spread a persona set is: mean pairwise cosine and the nearest neighbour's cosine."""
    n = len(vectors)
    if n < 2:
        return {"count": n, "mean_pairwise_similarity": None, "nearest_neighbour": None}
    sims = vectors @ vectors.T
    mean = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    np.fill_diagonal(sims, -np.inf)
    nearest = sims.max(axis=1)
    return {
        "count": n,
        "mean_pairwise_similarity": _round(mean),
        "nearest_neighbour": {"mean": _round(nearest.mean()),
                              **{f"p{q}": _round(np.percentile(nearest, q)) for q in (10, 50, 90)},
                              "histogram": np.histogram(nearest, bins=20, range=(-1.0, 1.0))[0].tolist()},
    }


def output_spread(vectors: np.ndarray, texts: list[str], rng: np.random.Generator | None = None,
                  threshold: float = NEAR_DUPLICATE) -> dict[str, Any]:
    """How spread a set of outputs is: mean pairwise cosine, distinct-1/2, near-duplicate share; with
    ``rng``, also a bootstrap interval for each (``intervals``)."""
    n = len(vectors)
    spread: dict[str, Any] = {"count": n, "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}
    if rng is not None:
        spread["intervals"] = spread_intervals(vectors, texts, rng, threshold=threshold)
    if n < 2:
        return {**spread, "mean_pairwise_similarity": None, "near_duplicate_share": None}
    sims = vectors @ vectors.T
    mean = (sims.sum() - np.trace(sims)) / (n * (n - 1))
    np.fill_diagonal(sims, -np.inf)
    near = float((sims.max(axis=1) >= threshold).mean())
    return {**spread, "mean_pairwise_similarity": _round(mean), "near_duplicate_share": _round(near)}


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts (Li et al. 2016): 1.0 means nothing repeats."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = words_of(text)
        grams.extend(zip(*(words[k:] for k in range(n))))
    return _round(len(set(grams)) / len(grams)) if grams else None


def _baseline_comparison(store: Store, task: str, model: str, outputs: np.ndarray, texts: list[str],
                         rng: np.random.Generator, threshold: float) -> dict[str, Any] | None:
    """With personas against without, on equally many outputs (distinct-n depends on the count), with
    each figure's difference, its interval and p-value, and a sentence saying what they show."""
    rows = store.query(
        f"SELECT o.vector, {OUTPUT_TEXT} FROM generations g JOIN (SELECT generation_key, any_value(vector) AS vector "
        "FROM output_embeddings WHERE model = ? GROUP BY 1) o ON o.generation_key = g.key "
        "WHERE g.task = ? AND g.status = 'ok' ORDER BY g.key", [model, baseline_name(task)])
    if not rows or not len(outputs):
        return None
    k = min(len(rows), len(outputs))
    mine = np.sort(rng.choice(len(outputs), k, replace=False))
    theirs = np.sort(rng.choice(len(rows), k, replace=False))
    with_vectors, with_texts = outputs[mine], [texts[m] for m in mine]
    without_vectors, without_texts = _matrix([rows[t][0] for t in theirs]), [rows[t][1] or "" for t in theirs]
    difference = compare(with_vectors, with_texts, without_vectors, without_texts, rng, threshold)
    return {
        "samples": k,
        "with_personas": output_spread(with_vectors, with_texts, rng, threshold),
        "without_personas": output_spread(without_vectors, without_texts, rng, threshold),
        "difference": difference,
        "statement": significance_sentence(difference, k),
    }


def _round(value: float) -> float:
    return round(float(value), 4)


# -- the no-persona baseline --------------------------------------------------------------------
def baseline_task(task_cls: type[Synthesizer], options, samples: int) -> Synthesizer:
    """The task with its persona removed from every prompt: ``samples`` work items, keyed by index,
    stored under ``<task>-baseline``. The persona is passed as "" and lines left holding only a
    label (``Persona:``) are dropped, so the prompt is the task's own, minus the persona."""

    class Baseline(task_cls):  # type: ignore[misc, valid-type]
        name = baseline_name(task_cls.name)
        row_description = task_cls.row_description or task_cls.name

        def work_items(self, ctx):
            for index in range(samples):
                yield WorkItem(key=self.item_key(ctx, "no persona", index, ctx.settings.seed), input_id=None,
                               data={"persona": ""})

        def run_item(self, item):
            inner = super().run_item(item)
            prompt = next(inner)
            while True:
                completion = yield _without_persona(prompt)
                try:
                    prompt = inner.send(completion)
                except StopIteration as stop:
                    return stop.value

    return Baseline(options)


_EMPTY_LABEL = re.compile(r"^[ \t]*Persona:[ \t]*\n", re.M)


def _without_persona(prompt: Prompt) -> Prompt:
    chat = [{**m, "content": _EMPTY_LABEL.sub("", m["content"])} for m in prompt.chat] if prompt.chat else None
    completion = _EMPTY_LABEL.sub("", prompt.completion)
    return Prompt(completion=completion, chat=chat, max_tokens=prompt.max_tokens, stop=prompt.stop,
                  json_schema=prompt.json_schema, temperature=prompt.temperature)


def task_run_context(store: Store, task: str) -> tuple[dict, dict]:
    """The options and settings of the task's latest run that stored an ok row: a baseline must
    prompt and sample as that run did."""
    rows = store.query(
        "SELECT g.options, r.settings FROM generations g LEFT JOIN runs r ON r.id = g.run_id "
        "WHERE g.task = ? AND g.status = 'ok' ORDER BY g.created_at DESC LIMIT 1", [task])
    if not rows:
        raise UsageError(f"diversity: no finished rows for task '{task}'")
    options = json.loads(rows[0][0]) if rows[0][0] else {}
    settings = json.loads(rows[0][1]) if rows[0][1] else {}
    sampling = ("backend", "model", "base_url", "openai_chat", "temperature", "top_p", "max_tokens", "seed", "n_ctx")
    return options, {k: v for k, v in settings.items() if k in sampling and v is not None}
