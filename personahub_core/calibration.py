"""A cosine threshold that belongs to its embedding model, chosen on pairs we wrote and know the answer to.

The calibration set (``sample_data/embedding_calibration.jsonl``) holds near-duplicate persona pairs
(paraphrases, reorderings, small edits) and distinct-but-similar ones (same occupation, another
person; another occupation in the same place; the same field). A model's threshold is the one that
best separates them (most near-duplicates caught less distinct pairs marked, the middle of the best
range). The held-out set (``embedding_heldout.jsonl``, other bases) is only for measuring
(``benchmarks/embeddings.py``). Both are written by ``benchmarks/embedding_pairs.py``.

A model whose vectors do not separate the two kinds on the calibration set (anisotropic vectors, all
pointing one way, as a generation model's mean-pooled states do) has no threshold worth using.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where a calibration is computed: the dedup command's help reads SHIPPED
    import numpy as np

CALIBRATION_SET = "embedding_calibration.jsonl"
HELD_OUT_SET = "embedding_heldout.jsonl"
# Below these on the calibration set a model's vectors are too poorly separated to mark with.
MIN_AUC = 0.97
MIN_RECALL = 0.90  # near-duplicates caught at the chosen threshold
MAX_FALSE = 0.05  # distinct pairs marked at the chosen threshold


@dataclass(frozen=True)
class Calibration:
    """A model's threshold and how well its vectors separate the calibration set's two kinds of pair."""

    model: str
    threshold: float
    auc: float  # chance that a near-duplicate pair scores above a distinct one
    near_median: float
    distinct_median: float
    recall: float  # near-duplicate pairs at or above the threshold
    false_rate: float  # distinct pairs at or above the threshold
    near_pairs: int
    distinct_pairs: int

    @property
    def poorly_separated(self) -> bool:
        return self.auc < MIN_AUC or self.recall < MIN_RECALL or self.false_rate > MAX_FALSE

    def summary(self) -> str:
        return (f"{self.model} on the calibration set ({self.near_pairs} near-duplicate, {self.distinct_pairs} "
                f"distinct pairs): AUC {self.auc:.3f}, median cosine {self.near_median:.2f} near-duplicate vs "
                f"{self.distinct_median:.2f} distinct; at {self.threshold:.3f} it catches {self.recall:.0%} "
                f"and marks {self.false_rate:.0%} of distinct pairs")

    def as_dict(self) -> dict:
        return asdict(self)


# The shipped model's calibration, from calibrate() on the calibration set (a test recomputes it).
SHIPPED = {
    "all-MiniLM-L6-v2": Calibration(model="all-MiniLM-L6-v2", threshold=0.746, auc=0.9999, near_median=0.9812,
                                    distinct_median=0.4474, recall=0.9917, false_rate=0.005, near_pairs=240,
                                    distinct_pairs=200),
}


def load_pairs(name: str = CALIBRATION_SET) -> list[dict]:
    """Pairs of a set: a, b, label (near | distinct), kind, field."""
    from .sample_data import data_dir

    return [json.loads(line) for line in Path(data_dir() / name).read_text().splitlines() if line.strip()]


def pair_cosines(embedder, pairs: list[dict]) -> np.ndarray:
    """Cosine of each pair, each distinct text embedded once."""
    import numpy as np

    texts = sorted({p["a"] for p in pairs} | {p["b"] for p in pairs})
    row = {t: k for k, t in enumerate(texts)}
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    a = vectors[[row[p["a"]] for p in pairs]]
    b = vectors[[row[p["b"]] for p in pairs]]
    return (a * b).sum(axis=1)


def auc(near: np.ndarray, distinct: np.ndarray) -> float:
    """P(a near-duplicate pair scores above a distinct pair), ties counting half."""
    above = (near[:, None] > distinct[None, :]).sum() + 0.5 * (near[:, None] == distinct[None, :]).sum()
    return float(above / (len(near) * len(distinct)))


def choose_threshold(near: np.ndarray, distinct: np.ndarray) -> float:
    """The threshold with the most near-duplicates caught less distinct pairs marked (Youden's J),
    candidates halfway between neighbouring scores; where several tie, the middle one, the farthest
    from both kinds."""
    import numpy as np

    scores = np.unique(np.concatenate([near, distinct]))
    candidates = (scores[:-1] + scores[1:]) / 2 if len(scores) > 1 else scores
    caught = (near[None, :] >= candidates[:, None]).mean(axis=1)
    marked = (distinct[None, :] >= candidates[:, None]).mean(axis=1)
    j = caught - marked
    best = candidates[np.flatnonzero(np.isclose(j, j.max()))]
    return float(best[len(best) // 2])


def calibrate(embedder, pairs: list[dict] | None = None) -> Calibration:
    import numpy as np

    pairs = load_pairs() if pairs is None else pairs
    cos = pair_cosines(embedder, pairs)
    is_near = np.array([p["label"] == "near" for p in pairs])
    near, distinct = cos[is_near], cos[~is_near]
    threshold = round(choose_threshold(near, distinct), 3)
    return Calibration(
        model=embedder.name, threshold=threshold, auc=round(auc(near, distinct), 4),
        near_median=round(float(np.median(near)), 4), distinct_median=round(float(np.median(distinct)), 4),
        recall=round(float((near >= threshold).mean()), 4), false_rate=round(float((distinct >= threshold).mean()), 4),
        near_pairs=int(len(near)), distinct_pairs=int(len(distinct)),
    )
