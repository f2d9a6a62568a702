"""``personahub dedup``: the installed deduplicators in the order they declare (``dedup_step``); with
ours, the paper's chain: MinHash then embeddings, after the quality filter.

Each step is an ordinary task run (recorded in ``runs``), incremental like any other: a second
``dedup`` checks only personas added since.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .calibration import SHIPPED
from .chains import NO_DEDUP, dedup_chain
from .embedding_defaults import EMBEDDING_MODEL_HELP, SHIPPED_MODEL
from .errors import PersonaHubError, UsageError
from .plugins import get_registry
from .settings import dash_o_options, load_settings
from .store import Store
from .task_option_sources import check_task_tables, resolve_task_options
from .terminal_text import markup_safe

err = Console(stderr=True)
COSINE_HELP = (f"embedding cosine threshold (default: the embedding model's own, calibrated on the shipped "
               f"calibration set: {SHIPPED[SHIPPED_MODEL].threshold} for {SHIPPED_MODEL}; other models are "
               f"calibrated on first use)")


def dedup_cmd(
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Jaccard and cosine threshold (default: 0.9 "
                                              "Jaccard, the embedding model's calibrated cosine)"),
    jaccard: Optional[float] = typer.Option(None, "--jaccard", help="MinHash word-set Jaccard threshold"),
    cosine: Optional[float] = typer.Option(None, "--embedding-threshold", "--cosine", help=COSINE_HELP),
    skip: list[str] = typer.Option([], "--skip", help="leave out a step (a deduplicator's name, e.g. quality, minhash or embedding)"),
    fresh: bool = typer.Option(False, "--fresh", help="forget earlier results and check every persona again"),
    embedding_model: Optional[str] = typer.Option(None, "--embedding-model", "--model", help=EMBEDDING_MODEL_HELP),
    backend: Optional[str] = typer.Option(None, "--backend", help="for a served embedding model: openai"),
    option: list[str] = typer.Option([], "--option", "-o", help="an option of the backend, NAME=VALUE (personahub "
                                     "plugins show BACKEND), e.g. -o base_url=http://127.0.0.1:8000/v1"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="-o base_url=: OpenAI-compatible server URL"),
    db: Optional[Path] = typer.Option(None, "--db", help="DuckDB store (default ./personahub.duckdb, or PERSONAHUB_DB)"),
    as_json: bool = typer.Option(False, "--json", help="end with a JSON summary line on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
):
    """Mark near-duplicate and unusable personas with the installed deduplicators, in their declared order
    (ours: quality filter, MinHash on Jaccard, embeddings on cosine)."""
    from .api import run_in_store

    chain = {cls.name: cls for cls in dedup_chain(get_registry().tasks)}
    if not chain:
        raise UsageError(NO_DEDUP)
    unknown = [s for s in skip if s not in chain]
    if unknown:
        raise UsageError(f"--skip {unknown[0]}: expected one of {', '.join(chain)}")
    steps = [name for name in chain if name not in skip]
    if not steps:
        raise UsageError("no deduplication step to run: every installed one is skipped")
    # --jaccard and --embedding-threshold go to the steps that declare that measure (dedup_measure), --threshold to any.
    by_measure = {"jaccard": jaccard, "cosine": cosine}
    settings = load_settings(db=db, embedding_model=embedding_model, backend=backend,
                             **dash_o_options(option, base_url=base_url))
    for warning in check_task_tables(get_registry().tasks):
        err.print(f"[yellow]warning:[/yellow] {markup_safe(warning)}", highlight=False)
    options = {}  # each step's, checked before the store is opened; what these flags leave out comes from
    for step in steps:  # PERSONAHUB_<STEP>__<OPTION> and [tasks.<step>], as for personahub run
        task_cls = chain[step]
        values = {"fresh": fresh} if "fresh" in task_cls.Options.model_fields else {}
        limit = by_measure.get(task_cls.dedup_measure)
        limit = threshold if limit is None else limit
        if limit is not None and "threshold" in task_cls.Options.model_fields:
            values["threshold"] = limit
        try:
            options[step], _ = resolve_task_options(task_cls, values)
        except PersonaHubError as exc:
            raise UsageError(f"dedup {step}: {exc}") from None
    results = []
    with Store(settings.db) as store:
        for step in steps:
            task_cls = chain[step]
            before = store.marked_count(step)
            if not (quiet or as_json):
                err.print(f"[bold]dedup {len(results) + 1}/{len(steps)}: {step}[/bold]")
            result = run_in_store(task_cls(options[step]), store, settings, quiet=quiet or as_json)
            result["marked"] = store.marked_count(step) - before
            results.append(result)
            if not (quiet or as_json):
                rate = result["items_done"] / result["seconds"] if result["seconds"] else 0.0
                err.print(f"  {step}: checked {result['items_done']:,} personas in {result['seconds']} s "
                          f"({rate:,.0f}/s), marked {result['marked']:,}")
        personas = store.count("personas")
        kept = store.kept_count()
    summary = {
        "steps": [{k: r[k] for k in ("task", "items_done", "marked", "seconds", "notes")} for r in results],
        "personas": personas, "kept": kept, "marked": personas - kept, "db": str(settings.db),
    }
    if as_json:
        print(json.dumps(summary))
        return
    table = Table("step", "checked", "marked", "seconds", title="personahub dedup")
    for r in results:
        table.add_row(r["task"], str(r["items_done"]), str(r["marked"]), str(r["seconds"]))
    err.print(table)
    err.print(f"{kept} of {personas} personas kept; marked ones are left out of exports unless --all")
