"""How sure the diversity study is: bootstrap intervals, a test of with against without personas,
and persona fidelity. Everything is seeded, so the same vectors give the same numbers.

    rows resampled with replacement (B times)  ──>  each figure recomputed on every resample
        ──>  the 2.5th and 97.5th percentiles are its 95% interval

A figure over pairs of rows (mean pairwise similarity, near-duplicate share) never pairs a row with its
own copy: a resample is a vector of counts ``c`` and the pairs are weighted ``c_i * c_j`` for ``i != j``.
Distinct-n is a ratio of sums over rows once each n-gram occurrence is weighted by one over how often
that n-gram occurs in the whole set (those weights add up to the number of distinct n-grams), so a
resample recomputes it as ``c @ distinct / c @ total`` and a drawn copy is not mistaken for repetition
(the weights are held at the whole set's, a first-order approximation of how distinct-n varies).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

import numpy as np

from .words import words as words_of

RESAMPLES = 1000
LEVEL = 0.95
MIN_ROWS = 100  # below this a figure's interval is too wide to read one way or the other
MIN_PAIRS = 30
FIDELITY_K = 5
FIDELITY_DRAWS = 20
NEAR_DUPLICATE = 0.9  # the paper's embedding dedup threshold: for a model without a calibrated one


def near_duplicate_threshold(model: str) -> float | None:
    """The cosine at which ``model``'s vectors mark a near-duplicate, calibrated for it (as embedding
    dedup uses it); None for a model we have no calibration for."""
    from .calibration import SHIPPED

    return SHIPPED[model].threshold if model in SHIPPED else None


def interval(replicates: np.ndarray) -> list[float] | None:
    """The percentile interval at ``LEVEL`` of the finite replicates."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return None
    tail = (1 - LEVEL) / 2 * 100
    return [_round(np.percentile(finite, tail)), _round(np.percentile(finite, 100 - tail))]


def resample_counts(n: int, rng: np.random.Generator, resamples: int = RESAMPLES) -> np.ndarray:
    """``resamples`` x ``n`` counts: how often each row is drawn in each bootstrap resample."""
    draws = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(d, minlength=n) for d in draws]).astype(np.float64)


# -- the figures, as functions of row counts ------------------------------------------------------
def mean_pairwise(sims: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean cosine over pairs of drawn rows that are different rows, one value per row of ``counts``."""
    diagonal = np.diag(sims)
    total = ((counts @ sims) * counts).sum(axis=1) - (counts ** 2) @ diagonal
    weight = counts.sum(axis=1) ** 2 - (counts ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1), np.nan)


def near_duplicate_share(sims: np.ndarray, counts: np.ndarray, threshold: float = NEAR_DUPLICATE) -> np.ndarray:
    """Share of drawn rows whose nearest other drawn row is at cosine >= ``threshold``."""
    close = (sims >= threshold).astype(np.float64)
    np.fill_diagonal(close, 0)
    has_near = (counts > 0).astype(np.float64) @ close.T > 0  # [b, i]: row i has a near row drawn in b
    return (counts * has_near).sum(axis=1) / counts.sum(axis=1)


def distinct_parts(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its n-gram occurrences weighted by 1 / (occurrences of that n-gram in all rows), and
    its number of n-grams. ``distinct.sum() / total.sum()`` is distinct-n of the whole set."""
    grams = [list(zip(*(words[k:] for k in range(n)))) for words in (words_of(t) for t in texts)]
    seen = Counter(g for row in grams for g in row)
    distinct = np.array([sum(1 / seen[g] for g in row) for row in grams], np.float64)
    total = np.array([len(row) for row in grams], np.float64)
    return distinct, total


def distinct_ratio(parts: tuple[np.ndarray, np.ndarray], counts: np.ndarray) -> np.ndarray:
    distinct, total = parts
    grams = counts @ total
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(grams > 0, (counts @ distinct) / np.where(grams > 0, grams, 1), np.nan)


def spread_figures(vectors: np.ndarray, texts: list[str],
                   threshold: float = NEAR_DUPLICATE) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each figure of an output set as a function of resample counts (all ones: the set itself)."""
    sims = (vectors @ vectors.T).astype(np.float64)
    parts = {n: distinct_parts(texts, n) for n in (1, 2)}
    return {
        "mean_pairwise_similarity": lambda c: mean_pairwise(sims, c),
        "distinct_1": lambda c: distinct_ratio(parts[1], c),
        "distinct_2": lambda c: distinct_ratio(parts[2], c),
        "near_duplicate_share": lambda c: near_duplicate_share(sims, c, threshold),
    }


def spread_intervals(vectors: np.ndarray, texts: list[str], rng: np.random.Generator,
                     resamples: int = RESAMPLES, threshold: float = NEAR_DUPLICATE) -> dict[str, list | None]:
    """A bootstrap interval for every figure of ``output_spread``."""
    n = len(texts)
    if n < 2:
        return {name: None for name in ("mean_pairwise_similarity", "distinct_1", "distinct_2", "near_duplicate_share")}
    counts = resample_counts(n, rng, resamples)
    return {name: interval(figure(counts)) for name, figure in spread_figures(vectors, texts, threshold).items()}


def pair_interval(sims: np.ndarray, rng: np.random.Generator) -> list[float] | None:
    """Interval of a bin's mean output similarity: the bin's pairs resampled with replacement."""
    if len(sims) < 2:
        return None
    draws = rng.integers(0, len(sims), size=(RESAMPLES, len(sims)))
    return interval(sims[draws].mean(axis=1))


# -- with personas against without ----------------------------------------------------------------
def compare(with_vectors: np.ndarray, with_texts: list[str], without_vectors: np.ndarray, without_texts: list[str],
            rng: np.random.Generator, threshold: float = NEAR_DUPLICATE) -> dict[str, dict[str, Any]]:
    """For each figure: with minus without, its bootstrap interval, and a two-sided bootstrap p-value
    (twice the share of resampled differences on the far side of zero, at most 1, and at least 1/B:
    B resamples cannot show less). The two sets are resampled independently: they are different rows."""
    a, b = spread_figures(with_vectors, with_texts, threshold), spread_figures(without_vectors, without_texts, threshold)
    ca, cb = resample_counts(len(with_texts), rng), resample_counts(len(without_texts), rng)
    ones_a, ones_b = np.ones((1, len(with_texts))), np.ones((1, len(without_texts)))
    result = {}
    for name in a:
        value = float(a[name](ones_a)[0] - b[name](ones_b)[0])
        diffs = a[name](ca) - b[name](cb)
        diffs = diffs[np.isfinite(diffs)]
        if not np.isfinite(value) or not len(diffs):
            result[name] = {"difference": None, "interval": None, "p_value": None}
            continue
        p = min(1.0, max(1 / len(diffs), 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))
        result[name] = {"difference": _round(value), "interval": interval(diffs), "p_value": _round(p)}
    return result


def significance_sentence(difference: dict[str, Any], samples: int) -> str:
    """One plain sentence on the mean pairwise similarity of outputs with against without personas."""
    d = difference["mean_pairwise_similarity"]
    if d["difference"] is None:
        return "Too few outputs to compare diversity with and without personas."
    lo, hi = d["interval"]
    stats = (f"mean pairwise similarity with minus without personas {d['difference']:+.3f}, "
             f"95% interval [{lo:+.3f}, {hi:+.3f}], p = {d['p_value']:.3g}, {samples} outputs each")
    if lo > 0:
        return f"Outputs written with personas are less diverse than without ({stats})."
    if hi < 0:
        return f"Outputs written with personas are more diverse than without ({stats})."
    return f"No significant difference in diversity with and without personas ({stats})."


# -- persona fidelity -----------------------------------------------------------------------------
def fidelity(personas: np.ndarray, outputs: np.ndarray, rng: np.random.Generator, k: int = FIDELITY_K,
             draws: int = FIDELITY_DRAWS) -> dict[str, Any]:
    """How often an output is nearer its own persona than k - 1 other rows' personas drawn at random
    (chance is 1/k). A tie with the own persona counts as a share of a win. Per output the rate is
    averaged over ``draws`` draws; the interval resamples outputs."""
    n = len(outputs)
    result: dict[str, Any] = {"k": k, "draws": draws, "chance": _round(1 / k), "outputs": n}
    if n < k:
        return {**result, "rate": None, "interval": None}
    cross = (outputs @ personas.T).astype(np.float64)  # cross[i, j]: output i against persona j
    own = np.diag(cross)
    rates = np.empty(n)
    for i in range(n):
        others = np.delete(np.arange(n), i)
        picks = np.stack([rng.choice(others, k - 1, replace=False) for _ in range(draws)])
        rivals = cross[i, picks]
        ties = (rivals == own[i]).sum(axis=1)
        won = (rivals <= own[i]).all(axis=1)
        rates[i] = np.where(won, 1 / (1 + ties), 0.0).mean()
    counts = resample_counts(n, rng)
    return {**result, "rate": _round(rates.mean()), "interval": interval(counts @ rates / n)}


def sample_warnings(rows: int, bins: list[dict], baseline: dict | None) -> list[str]:
    """What is too small to read: fewer than MIN_ROWS rows or baseline samples, bins under MIN_PAIRS pairs."""
    warnings = []
    if rows < MIN_ROWS:
        warnings.append(f"only {rows} rows: at least {MIN_ROWS} are needed for intervals narrow enough to read")
    thin = [b["persona_similarity"] for b in bins if 0 < b["pairs"] < MIN_PAIRS]
    if thin:
        warnings.append(f"bins with fewer than {MIN_PAIRS} pairs: {', '.join(str(t) for t in thin)}")
    if baseline and baseline["samples"] < MIN_ROWS:
        warnings.append(f"the baseline comparison has only {baseline['samples']} outputs each; "
                        f"at least {MIN_ROWS} are needed")
    return warnings


def verdict(result: dict[str, Any]) -> str:
    """The study's finding in a sentence or two, with its caveats."""
    base, fid = result.get("baseline"), result.get("fidelity") or {}
    parts = [base["statement"] if base else "No no-persona baseline to compare with (run with --baseline N)."]
    if fid.get("rate") is not None:
        lo, hi = fid["interval"]
        above = "above" if lo > fid["chance"] else "not clearly above"
        parts.append(f"Outputs pick out their own persona among {fid['k']} at a rate of {fid['rate']:.2f} "
                     f"(95% interval {lo:.2f}-{hi:.2f}), {above} chance ({fid['chance']:.2f}).")
    if result.get("warnings"):
        parts.append("Small sample: read these as indications, not findings.")
    return " ".join(parts)


def figure_text(value: float | None, bounds: list[float] | None, digits: int = 3) -> str:
    """A figure with its interval for people: "0.762 [0.741, 0.780]", or "–" when there is none."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]" if bounds else "")


def _round(value: float) -> float:
    return round(float(value), 4)
