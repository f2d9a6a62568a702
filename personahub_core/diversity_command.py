"""``personahub diversity``: the command around the study in diversity.py, which makes the baseline
(a run of the task without personas) and embeds what is missing first."""

from __future__ import annotations

from typing import Any

from .api import resolve_task, run_in_store
from .diversity import (DEFAULT_BINS, DEFAULT_WIDTH, MAX_PAIRS_PER_BIN, baseline_task, embed_task, study,
                        task_run_context)
from .embedders import open_embedder
from .errors import UsageError
from .plugins import get_registry
from .progress import progress_bar
from .settings import load_settings
from .store import Store
from .tasks import Synthesizer


def run_study(task: str, *, db=None, embedding_model: str | None = None, bins: tuple[float, ...] = DEFAULT_BINS,
              width: float = DEFAULT_WIDTH, baseline: int | None = None, seed: int = 0,
              max_pairs: int = MAX_PAIRS_PER_BIN, quiet: bool = False, **flags: Any) -> dict[str, Any]:
    """``personahub diversity``: make the baseline if asked, embed what is missing, run the study."""
    if not 0 < width < 1:
        raise UsageError(f"--width {width}: expected a number between 0 and 1")
    if any(not -1 <= b <= 1 for b in bins) or not bins:
        raise UsageError("--bins: expected comma-separated similarities between -1 and 1, e.g. 0.4,0.6,0.8,0.9")
    if baseline is not None and baseline < 1:
        raise UsageError("--baseline must be 1 or more")
    settings = load_settings(db=db, **flags)
    with Store(settings.db) as store:
        tasks = [r[0] for r in store.query("SELECT DISTINCT task FROM generations WHERE status = 'ok' ORDER BY 1")]
        if task not in tasks:
            raise UsageError(f"diversity --task {task}: no finished rows for it; tasks with rows: {', '.join(tasks) or 'none'}")
        options, sampling = task_run_context(store, task)
        if baseline is not None:
            task_cls = resolve_task(task)
            if not issubclass(task_cls, Synthesizer):
                raise UsageError(f"diversity --baseline: '{task}' is not a synthesizer")
            given = {k: v for k, v in flags.items() if v is not None}
            run_settings = load_settings(db=settings.db, **{**sampling, **given})
            run_in_store(baseline_task(task_cls, task_cls.Options(**options), baseline), store, run_settings, quiet=quiet)
        # The embedding model dedup and search use (the shipped sentence model unless one is named).
        embedder = open_embedder(settings.model_copy(update={"embedding_model": embedding_model or settings.embedding_model}),
                                 get_registry().backend(settings.backend))
        try:
            model = embedder.name
            with progress_bar("embedding personas", quiet=quiet) as progress:
                embed_task(store, embedder, model, task, progress)
        finally:
            embedder.close()
        return study(store, task, model, bins, width, seed, max_pairs)
