"""The ``personahub`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import api
from .dedup_command import dedup_cmd
from .errors import PersonaHubError, UsageError
from .plugins import get_registry
from .settings import load_settings, settings_origins
from .store import Store

app = typer.Typer(
    name="personahub",
    help="Personas from text, synthetic data from personas. Offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
personas_app = typer.Typer(help="Look at personas: sample, show, search.", no_args_is_help=True)
app.add_typer(personas_app, name="personas")
out = Console()
err = Console(stderr=True, soft_wrap=True)

DbOption = typer.Option(None, "--db", help="DuckDB store (default ./personahub.duckdb, or PERSONAHUB_DB)")


@app.command("plugins")
def plugins_cmd(as_json: bool = typer.Option(False, "--json", help="print a JSON array")):
    """List installed plugins and the tasks they provide."""
    registry = get_registry()
    rows = [p for p in registry.plugins if p.tasks or p.name != "personahub-core"]
    if as_json:
        print(json.dumps([{"name": p.name, "version": p.version, "tasks": p.tasks} for p in rows], indent=2))
        return
    table = Table("plugin", "version", "tasks")
    for p in rows:
        table.add_row(p.name, p.version, ", ".join(f"{t['name']} ({t['kind']})" for t in p.tasks))
    out.print(table)
    out.print(f"backends: {', '.join(sorted(registry.backends))}; executors: {', '.join(sorted(registry.executors))}")


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def run_cmd(
    ctx: typer.Context,
    plugin: str = typer.Option(..., "--plugin", "-p", help="task to run (see 'personahub plugins')"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many new work items"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences decoded together"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="completion tokens per call"),
    seed: Optional[int] = typer.Option(None, "--seed", help="base seed"),
    temperature: Optional[float] = typer.Option(None, "--temperature"),
    model: Optional[str] = typer.Option(None, "--model", help="GGUF path, or model name with --backend openai"),
    backend: Optional[str] = typer.Option(None, "--backend", help="llama-cpp | openai | fake"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local | ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address"),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="llama.cpp context size"),
    threads: Optional[int] = typer.Option(None, "--threads", help="llama.cpp threads"),
    where: list[str] = typer.Option([], "--where", help="persona filter FIELD OP VALUE, e.g. 'hop<=2' or 'persona~nurse'"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="try failed and rejected items again"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not reuse earlier completions"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json", help="end with a JSON summary line on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
):
    """Run one task. Task options (e.g. --topic for math) follow the common ones."""
    try:
        result = api.run(
            plugin, list(ctx.args), quiet=quiet, limit=limit, where=where, retry_failed=retry_failed,
            db=db, batch_size=batch_size, max_tokens=max_tokens, seed=seed, temperature=temperature,
            model=model, backend=backend, base_url=base_url, executor=executor, ray_address=ray_address,
            n_ctx=n_ctx, threads=threads, cache=False if no_cache else None,
        )
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]: finished items are stored; run the same command again to resume")
        raise typer.Exit(130)
    if not quiet:
        _print_summary(result)
    if as_json:
        print(json.dumps(result))


def _print_summary(result: dict) -> None:
    table = Table(title=f"personahub run --plugin {result['task']}", show_header=False)
    for label, key in [("done", "items_done"), ("failed or rejected", "items_failed"),
                       ("already stored (skipped)", "items_skipped"), ("personas added", "personas_added"),
                       ("completion tokens", "completion_tokens"), ("cached calls", "cached_calls"),
                       ("seconds", "seconds"), ("tokens/s", "completion_tokens_per_second")]:
        table.add_row(label, str(result[key]))
    err.print(table)
    if result["kind"] == "synthesizer":
        err.print(f"Results are in {result['db']}: personahub export {result['task']} --format jsonl --out {result['task']}.jsonl")
    elif result["kind"] in ("source", "expander", "deduplicator"):
        err.print(f"Personas are in {result['db']}: personahub export personas --format jsonl --out personas.jsonl --full")


@app.command("ingest")
def ingest_cmd(
    paths: list[Path] = typer.Argument(..., help="files or folders: jsonl, json, csv, parquet, txt (optionally .gz)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="field holding the text (default: text/content/body)"),
    id_field: Optional[str] = typer.Option(None, "--id-field", help="field holding the original id"),
    lines: bool = typer.Option(False, "--lines", help="a .txt file holds one document per line"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json"),
):
    """Load a corpus into the store; exact duplicate texts are collapsed."""
    from .ingest import ingest_paths

    settings = load_settings(db=db)
    with Store(settings.db) as store:
        report = ingest_paths(store, paths, text_field=text_field, id_field=id_field, lines=lines, quiet=as_json)
    if report.read == 0 and report.bad:
        raise UsageError(f"no usable records; first problem: {report.problems[0]}")
    for problem in report.problems:
        err.print(f"[yellow]skipped[/yellow] {problem}")
    if report.bad > len(report.problems):
        err.print(f"[yellow]... and {report.bad - len(report.problems)} more skipped records[/yellow]")
    summary = {"files": report.files, "read": report.read, "added": report.added,
               "duplicates": report.duplicates, "bad": report.bad, "db": str(settings.db)}
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"ingested {report.added} new documents from {report.files} file(s) "
                  f"({report.duplicates} duplicates collapsed, {report.bad} bad records skipped) into {settings.db}")


@app.command("export")
def export_cmd(
    what: str = typer.Argument(..., help="a synthesizer task name, or 'personas'"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | parquet | csv"),
    out_path: Path = typer.Option(..., "--out", help="file to write"),
    full: bool = typer.Option(False, "--full", help="add provenance and structured fields"),
    include_all: bool = typer.Option(False, "--all", help="include duplicates and rejects"),
    db: Optional[Path] = DbOption,
):
    """Write personas or a task's rows in PersonaHub's released schema."""
    from .export import export

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        n = export(store, what, fmt, out_path, full=full, include_all=include_all)
    err.print(f"wrote {n} rows to {out_path}")


@app.command("stats")
def stats_cmd(db: Optional[Path] = DbOption, as_json: bool = typer.Option(False, "--json")):
    """Counts of documents, personas, duplicates and generations in the store."""
    from .export import store_stats

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        stats = store_stats(store)
    if as_json:
        print(json.dumps(stats))
        return
    table = Table("what", "count")
    table.add_row("documents", str(stats["documents"]))
    table.add_row("personas", str(stats["personas"]))
    for origin, n in stats["personas_by_origin"].items():
        table.add_row(f"  origin {origin}", str(n))
    table.add_row("personas marked (duplicate/reject)", str(stats["personas_marked"]))
    for task, by_status in stats["generations"].items():
        table.add_row(f"generations {task}", ", ".join(f"{s} {n}" for s, n in by_status.items()))
    table.add_row("runs", str(stats["runs"]))
    out.print(table)


app.command("dedup")(dedup_cmd)


@app.command("config")
def config_cmd(
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json"),
):
    """Show the effective settings and where each came from (flag, environment, personahub.toml, default)."""
    settings = load_settings(db=db)
    origins = settings_origins(db=db)
    values = settings.model_dump(mode="json")
    if values.get("api_key"):
        values["api_key"] = "***"
    if as_json:
        print(json.dumps({k: {"value": values[k], "from": origins[k]} for k in values}))
        return
    table = Table("setting", "value", "from")
    for name, value in values.items():
        table.add_row(name, str(value), origins[name])
    out.print(table)


@personas_app.command("sample")
def personas_sample(
    n: int = typer.Option(5, "--n", help="how many"),
    seed: int = typer.Option(0, "--seed"),
    where: list[str] = typer.Option([], "--where"),
    db: Optional[Path] = DbOption,
):
    """A reproducible random sample of kept personas."""
    import random

    from .selection import select_personas

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        rows = select_personas(store, where)
    for row in random.Random(seed).sample(rows, min(n, len(rows))):
        out.print(f"[dim]{row['id']}[/dim] {row['persona']}")


@personas_app.command("show")
def personas_show(persona_id: str = typer.Argument(...), db: Optional[Path] = DbOption):
    """One persona with its provenance, dedup marks and generations."""
    from .export import persona_details

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        details = persona_details(store, persona_id)
    print(json.dumps(details, indent=2, default=str))


@personas_app.command("search")
def personas_search(
    text: str = typer.Argument(..., help="what the personas should be like"),
    k: int = typer.Option(10, "--k", help="how many"),
    db: Optional[Path] = DbOption,
    model: Optional[str] = typer.Option(None, "--model"),
    backend: Optional[str] = typer.Option(None, "--backend"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    as_json: bool = typer.Option(False, "--json"),
):
    """The personas most similar to TEXT by embedding (sqlite-vec index, built on first use)."""
    from .vector_search import search_personas

    settings = load_settings(db=db, model=model, backend=backend, base_url=base_url)
    with Store(settings.db) as store:
        hits = search_personas(store, settings, text, k)
    if as_json:
        print(json.dumps(hits))
        return
    for hit in hits:
        out.print(f"{hit['similarity']:.3f} [dim]{hit['id']}[/dim] {hit['persona']}")


def _register_extra_commands() -> None:
    registry = get_registry()
    registry.manager.hook.register_commands(cli=app)


def main() -> None:
    try:
        _register_extra_commands()
        app()  # standalone: typer prints its own usage errors and exits 2
    except PersonaHubError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected: one line unless debugging
        if os.environ.get("PERSONAHUB_DEBUG"):
            raise
        err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc} (set PERSONAHUB_DEBUG=1 for the traceback)",
                  highlight=False, soft_wrap=True)
        sys.exit(1)
