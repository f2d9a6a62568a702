"""The ``personahub`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from . import api
from .dedup_command import dedup_cmd
from .embedding_defaults import EMBEDDING_MODEL_HELP
from .errors import PersonaHubError, UsageError
from .plugins import get_registry
from .settings import dash_o_options, load_settings, public_values, resolve_options, settings_origins
from .run_outcome import failure_message
from .status_file import as_run, describe
from .store import Store, StoreLocked
from .terminal_text import cell, markup_safe, plain

app = typer.Typer(
    name="personahub",
    help="Personas from text, synthetic data from personas. Offline by default.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
personas_app = typer.Typer(help="Look at personas: sample, show, search.", no_args_is_help=True)
app.add_typer(personas_app, name="personas")
out = Console()
err = Console(stderr=True, soft_wrap=True)

COMMANDS_GROUP = "personahub.commands"  # entry points naming a plugin's commands, for --help
DbOption = typer.Option(None, "--db", help="DuckDB store (default ./personahub.duckdb, or PERSONAHUB_DB)")


# Shell completion (<TAB>) of the names plugins registered.
def complete_task(incomplete: str) -> list[str]:
    return sorted(n for n in get_registry().tasks if n.startswith(incomplete))


def complete_backend(incomplete: str) -> list[str]:
    return sorted(n for n in get_registry().backends if n.startswith(incomplete))


def complete_executor(incomplete: str) -> list[str]:
    return sorted(n for n in get_registry().executors if n.startswith(incomplete))


plugins_app = typer.Typer(help="Installed plugins and their tasks; 'plugins show TASK' for one task.")
app.add_typer(plugins_app, name="plugins")


@plugins_app.callback(invoke_without_command=True)
def plugins_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="print a JSON array")):
    """List installed plugins and the tasks they provide; 'plugins show TASK' for one task."""
    if ctx.invoked_subcommand is not None:
        return
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


@plugins_app.command("show")
def plugins_show(
    task: str = typer.Argument(..., help="an installed task, backend or executor, or a recipe file (*.toml)",
                               autocompletion=complete_task),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """One task: its kind, the plugin or recipe it comes from, its description and its options; or a
    backend or executor and its -o options."""
    from .task_info import component_info, options_panel, task_info, task_options_title

    registry = get_registry()
    if task not in registry.tasks:
        for kind, components in (("backend", registry.backends), ("executor", registry.executors)):
            if task in components:
                info = component_info(kind, components[task])
                if as_json:
                    print(json.dumps(info, default=str))
                    return
                out.print(f"[bold]{markup_safe(task)}[/bold] ({kind})", highlight=False)
                if info["description"]:
                    out.print(cell(info["description"]), highlight=False)
                out.print(options_panel(components[task].Options, "Options (-o NAME=VALUE, PERSONAHUB_NAME or "
                                        "personahub.toml)", dash_o=True))
                return
    task_cls = api.resolve_task(task)
    info = task_info(task_cls, get_registry().plugins)
    if as_json:
        print(json.dumps(info, default=str))
        return
    out.print(f"[bold]{markup_safe(info['name'])}[/bold] ({info['kind']}, from {markup_safe(info['plugin'])})", highlight=False)
    if info["description"]:
        out.print(cell(info["description"]), highlight=False)
    out.print(options_panel(task_cls.Options, task_options_title(task_cls, "Options")))


@app.command(
    "run",
    # --help is ours: with --plugin TASK it also lists that task's options.
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def run_cmd(
    ctx: typer.Context,
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", autocompletion=complete_task,
                                         help="task to run (see 'personahub plugins'), or a recipe file (*.toml)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many new work items"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="sequences decoded together"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="completion tokens per call"),
    seed: Optional[int] = typer.Option(None, "--seed", help="base seed"),
    temperature: Optional[float] = typer.Option(None, "--temperature"),
    model: Optional[str] = typer.Option(None, "--model", help="GGUF path, or model name with --backend openai"),
    backend: Optional[str] = typer.Option(None, "--backend", autocompletion=complete_backend,
                                          help="llama-cpp | openai | fake | one a plugin registered"),
    executor: Optional[str] = typer.Option(None, "--executor", autocompletion=complete_executor,
                                           help="local | ray | one a plugin registered"),
    option: list[str] = typer.Option([], "--option", "-o", help="an option of the backend or executor, NAME=VALUE "
                                     "(listed below), e.g. -o n_ctx=4096 or -o ray_address=HOST:PORT"),
    # Short forms of -o for the options the docs have always shown:
    base_url: Optional[str] = typer.Option(None, "--base-url", help="-o base_url=: OpenAI-compatible server URL"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="-o ray_address=: Ray cluster address"),
    n_ctx: Optional[int] = typer.Option(None, "--n-ctx", help="-o n_ctx=: llama.cpp context size"),
    threads: Optional[int] = typer.Option(None, "--threads", help="-o threads=: llama.cpp threads"),
    max_requests_per_minute: Optional[int] = typer.Option(None, "--max-requests-per-minute",
                                                          help="-o max_requests_per_minute=: --backend openai's request rate"),
    max_tokens_per_minute: Optional[int] = typer.Option(None, "--max-tokens-per-minute",
                                                        help="-o max_tokens_per_minute=: --backend openai's token rate"),
    where: list[str] = typer.Option([], "--where", help="persona filter FIELD OP VALUE, e.g. 'hop<=2' or 'persona~nurse'"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="try failed and rejected items again"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not reuse earlier completions"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json", help="end with a JSON summary line on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say what would run and cost; load no model, write nothing"),
    show_help: bool = typer.Option(False, "--help", help="show this message; with --plugin TASK, also the task's options"),
):
    """Run one task. Task options (e.g. --topic for math) follow the common ones, or come from
    PERSONAHUB_<TASK>__<OPTION> and the table tasks.<task> of personahub.toml."""
    if show_help:
        _print_run_help(ctx, plugin)
        return
    if plugin is None:
        raise UsageError("missing option --plugin TASK (see 'personahub plugins')")
    options = dash_o_options(option, base_url=base_url, ray_address=ray_address, n_ctx=n_ctx, threads=threads,
                             max_requests_per_minute=max_requests_per_minute, max_tokens_per_minute=max_tokens_per_minute)
    if dry_run:
        plan = api.dry_run(plugin, list(ctx.args), limit=limit, where=where, retry_failed=retry_failed, db=db,
                           batch_size=batch_size, max_tokens=max_tokens, seed=seed, temperature=temperature,
                           model=model, backend=backend, executor=executor, **options)
        if not quiet:
            _print_plan(plan)
        if as_json:
            print(json.dumps(plan))
        return
    fresh = _store_is_empty(db)
    try:
        with api.ctrl_c_remembered():
            result = api.run(
                plugin, list(ctx.args), quiet=quiet, limit=limit, where=where, retry_failed=retry_failed,
                db=db, batch_size=batch_size, max_tokens=max_tokens, seed=seed, temperature=temperature,
                model=model, backend=backend, executor=executor, cache=False if no_cache else None, **options,
            )
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]: finished items are stored; run the same command again to resume")
        raise typer.Exit(130)
    if fresh and result["kind"] == "synthesizer":  # the main job: it built the personas, so show them
        from .report import write_report

        path = Path(result["db"]).with_name(f"{Path(result['db']).stem}-report.html")
        with Store(result["db"], read_only=True) as store:
            result["report"] = str(Path(write_report(store, path, quiet=quiet or as_json)["path"]).resolve())
    if not quiet:
        _print_summary(result)
        if result.get("report"):
            err.print(f"Report: {markup_safe(result['report'])} (open it in a browser)")
    if as_json:
        print(json.dumps(result))
    if result["status"] == "failed":  # nothing to show for it
        raise PersonaHubError(failure_message(result))


def _print_run_help(ctx: typer.Context, plugin: Optional[str]) -> None:
    from .task_info import options_panel, task_options_title

    task_cls = None if plugin is None else api.resolve_task(plugin)  # an unknown task is an error before any help
    typer.echo(ctx.get_help())
    registry = get_registry()
    for kind, components in (("backend", registry.backends), ("executor", registry.executors)):
        for name, cls in sorted(components.items()):
            if cls.Options.model_fields:
                out.print(options_panel(cls.Options, f"-o options of {kind} '{name}'", dash_o=True))
    if task_cls is None:
        out.print(" A task's own options: personahub run --plugin TASK --help", highlight=False)
        return
    out.print(options_panel(task_cls.Options, task_options_title(
        task_cls, f"Options of task '{task_cls.name}' ({task_cls.kind}), after the common ones")))


def _store_is_empty(db: Optional[Path]) -> bool:
    path = load_settings(db=db).db
    if not path.exists():
        return True
    with Store(path, read_only=True) as store:
        return not store.scalar("SELECT count(*) FROM personas")


def _print_plan(plan: dict) -> None:
    table = Table(title=f"personahub run --plugin {markup_safe(plan['task'])} --dry-run: nothing runs, nothing is written")
    for column in ("stage", "new", "done", "retry", "to run", "prompt tok", "completion tok", "max", "seconds"):
        table.add_column(column, overflow="fold")

    def number(value) -> str:
        return "" if value is None else f"{value:,}"

    for s in plan["stages"]:
        seconds = s.get("seconds_expected")
        table.add_row(cell(s["task"]), *(number(s.get(k)) for k in ("items_new", "items_done", "items_to_retry", "items_to_run",
                                                               "prompt_tokens", "completion_tokens_expected",
                                                               "completion_tokens_max")),
                      "unknown" if seconds is None and "items_to_run" in s else number(seconds))
    err.print(table)
    for s in plan["stages"]:
        for key in ("note", "prompt_tokens_from", "completion_tokens_from", "speed_from", "retries_note"):
            if s.get(key):
                err.print(f"[dim]{markup_safe(s['task'])}: {markup_safe(s[key])}[/dim]")


def _print_summary(result: dict) -> None:
    table = Table(title=f"personahub run --plugin {markup_safe(result['task'])}", show_header=False)
    for label, key in [("done", "items_done"), ("failed or rejected", "items_failed"),
                       ("already stored (skipped)", "items_skipped"), ("personas added", "personas_added"),
                       ("completion tokens", "completion_tokens"), ("cached calls", "cached_calls"),
                       ("seconds", "seconds"), ("tokens/s", "completion_tokens_per_second")]:
        table.add_row(label, str(result[key]))
    if result.get("slot_occupancy") is not None:  # llama.cpp: how full --batch-size was kept while work was queued
        table.add_row("slot occupancy", f"{result['slot_occupancy']:.0%}")
    err.print(table)
    if result["kind"] == "synthesizer":
        err.print(f"Results are in {markup_safe(result['db'])}: personahub export {markup_safe(result['task'])} "
                  f"--format jsonl --out {markup_safe(result['task'])}.jsonl")
    elif result["kind"] in ("source", "expander", "deduplicator"):
        err.print(f"Personas are in {markup_safe(result['db'])}: personahub export personas --format jsonl --out personas.jsonl --full")


@app.command("ingest")
def ingest_cmd(
    paths: list[Path] = typer.Argument(..., help="files or folders: jsonl, json, csv, parquet, txt (optionally .gz)"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="field holding the text (default: text/content/body)"),
    id_field: Optional[str] = typer.Option(None, "--id-field", help="field holding the original id (kept as source_id)"),
    lines: bool = typer.Option(False, "--lines", help="a .txt file holds one document per line"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json"),
):
    """Load a corpus into the store; exact duplicate texts are collapsed."""
    from .ingest import expand_paths, ingest_paths

    settings = load_settings(db=db)
    expand_paths(paths)  # a missing or unknown input is reported before the store is created
    with Store(settings.db) as store:
        report = ingest_paths(store, paths, text_field=text_field, id_field=id_field, lines=lines, quiet=as_json)
    if report.read == 0:  # an empty .jsonl, .csv or .txt alike
        problems = report.problems + report.unread
        first = f"; first problem: {problems[0]}" if problems else " (the input is empty)"
        raise UsageError(f"no usable records in {', '.join(map(str, paths))}{first}")
    if report.replaced_utf8:
        err.print(f"[yellow]{report.replaced_utf8} line(s) had invalid UTF-8, replaced[/yellow]")
    for problem in report.problems:
        err.print(f"[yellow]skipped[/yellow] {markup_safe(problem)}")
    if report.bad > len(report.problems):
        err.print(f"[yellow]... and {report.bad - len(report.problems)} more skipped records[/yellow]")
    summary = {"files": report.files, "read": report.read, "added": report.added,
               "duplicates": report.duplicates, "bad": report.bad, "invalid_utf8_replaced": report.replaced_utf8,
               "unread": report.unread, "db": str(settings.db)}
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"ingested {report.added} new documents from {report.files - len(report.unread)} file(s) "
                  f"({report.duplicates} duplicates collapsed, {report.bad} bad records skipped) into {markup_safe(settings.db)}")
    for problem in report.unread:  # the files kept out, one line each, last
        err.print(f"[red]not read:[/red] {markup_safe(problem)}", highlight=False)
    if report.unread:
        raise typer.Exit(code=2)


@app.command("export")
def export_cmd(
    what: str = typer.Argument(..., help="a synthesizer task name, or 'personas'"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl | parquet | csv | hf (a Hugging Face dataset folder) | one a plugin registered"),
    out_path: Path = typer.Option(..., "--out", help="file to write (a folder for --format hf)"),
    full: bool = typer.Option(False, "--full", help="add provenance and structured fields"),
    include_all: bool = typer.Option(False, "--all", help="include duplicates and rejects"),
    verified: bool = typer.Option(False, "--verified", help="only rows with verdicts, all passed (run --plugin verify "
                                                            "or a judge recipe first)"),
    where: list[str] = typer.Option([], "--where", help="rows with a verdict meeting FIELD OP VALUE, e.g. 'score>=4', "
                                                        "'agreement>=0.66', 'verdict=verify', 'passed=true'"),
    db: Optional[Path] = DbOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Write personas or a task's rows in PersonaHub's released schema."""
    from .export import export

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        n = export(store, what, fmt, out_path, full=full, include_all=include_all, quiet=quiet,
                   tasks=get_registry().tasks, verified=verified, where=where, formats=get_registry().export_formats)
    err.print(f"wrote {n} rows to {markup_safe(out_path)}")


@app.command("push")
def push_cmd(
    what: str = typer.Argument(..., help="a synthesizer task name, or 'personas'"),
    repo: str = typer.Option(..., "--repo", help="Hugging Face dataset repo, ORG/NAME"),
    private: bool = typer.Option(False, "--private", help="create the repo private"),
    full: bool = typer.Option(False, "--full", help="add provenance and structured fields"),
    include_all: bool = typer.Option(False, "--all", help="include duplicates and rejects"),
    db: Optional[Path] = DbOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Upload personas or a task's rows to the Hugging Face Hub (token from HF_TOKEN), with a dataset card."""
    from .hf import push

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        url = push(store, what, repo, private=private, full=full, include_all=include_all, quiet=quiet,
                   tasks=get_registry().tasks)
    err.print(f"pushed {markup_safe(what)} to {markup_safe(url)}")


@app.command("report")
def report_cmd(
    out_path: Path = typer.Option(Path("personahub-report.html"), "--out", help="HTML file to write"),
    seed: int = typer.Option(0, "--seed", help="seed for the sampled examples"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json", help="end with a JSON summary line on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """One self-contained HTML page about the store: personas, graph, dedup, tasks, diversity."""
    from .report import write_report

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        summary = write_report(store, out_path, seed=seed, quiet=quiet or as_json)
    if as_json:
        print(json.dumps(summary))
    else:
        err.print(f"wrote {markup_safe(summary['path'])} ({summary['bytes'] / 1024:,.0f} KB); open it in a browser")


@app.command("diversity")
def diversity_cmd(
    task: str = typer.Option(..., "--task", help="a synthesizer task with stored rows"),
    embedding_model: Optional[str] = typer.Option(None, "--embedding-model", help=EMBEDDING_MODEL_HELP),
    bins: str = typer.Option("0.4,0.6,0.8,0.9", "--bins", help="persona similarities to sample pairs at"),
    width: float = typer.Option(0.05, "--width", help="half-width of each bin"),
    baseline: Optional[int] = typer.Option(None, "--baseline", help="make this many no-persona samples first"),
    pairs: int = typer.Option(1000, "--pairs", help="at most this many pairs per bin"),
    seed: int = typer.Option(0, "--seed", help="seed for the sampled pairs"),
    model: Optional[str] = typer.Option(None, "--model", help="generation model for --baseline"),
    backend: Optional[str] = typer.Option(None, "--backend", help="llama-cpp | openai | fake"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json", help="end with the table as one JSON line on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
):
    """The paper's study: persona pairs by similarity against the similarity of their outputs."""
    from .diversity_command import run_study

    try:
        centres = tuple(float(b) for b in bins.split(",") if b.strip())
    except ValueError:
        raise UsageError(f"--bins {bins!r}: expected comma-separated numbers, e.g. 0.4,0.6,0.8,0.9") from None
    if pairs < 1:
        raise UsageError("--pairs must be 1 or more")
    result = run_study(task, db=db, embedding_model=embedding_model, bins=centres, width=width, baseline=baseline,
                       seed=seed, max_pairs=pairs, quiet=quiet or as_json, model=model, backend=backend,
                       base_url=base_url)
    if not quiet:
        _print_study(result)
    if as_json:
        print(json.dumps(result))


def _print_study(result: dict) -> None:
    from .diversity_stats import figure_text

    table = Table("persona similarity", "pairs", "output similarity mean [95% interval]", "std",
                  title=f"diversity of {markup_safe(result['task'])} ({result['rows']} rows, {markup_safe(result['model'])})")
    for b in result["bins"]:
        o = b["output_similarity"]
        table.add_row(f"{b['persona_similarity']:.2f} ± {result['width']}", str(b["pairs"]),
                      figure_text(o["mean"], o.get("interval")), "–" if o["std"] is None else f"{o['std']:.3f}")
    err.print(table)
    p = result["personas"]
    if p["mean_pairwise_similarity"] is not None:
        nn = p["nearest_neighbour"]
        err.print(f"persona set: {p['count']} personas, mean pairwise similarity {p['mean_pairwise_similarity']:.3f}, "
                  f"nearest neighbour median {nn['p50']:.3f} (10th-90th percentile {nn['p10']:.3f}-{nn['p90']:.3f})")
    base = result["baseline"]
    figures = ("mean_pairwise_similarity", "distinct_1", "distinct_2", "near_duplicate_share")
    if base:
        compare = Table("outputs", "mean pairwise similarity", "distinct-1", "distinct-2", "near-duplicate share",
                        title=f"with personas against without ({base['samples']} each, 95% intervals)")
        for label, s in (("with personas", base["with_personas"]), ("without (baseline)", base["without_personas"])):
            compare.add_row(label, *(figure_text(s[k], s["intervals"][k]) for k in figures))
        d = base["difference"]
        compare.add_row("difference (p)", *(f"{figure_text(d[k]['difference'], d[k]['interval'])} (p {d[k]['p_value']})"
                                            if d[k]["difference"] is not None else "–" for k in figures))
        err.print(compare)
    else:
        err.print(f"[dim]no baseline yet: personahub diversity --task {markup_safe(result['task'])} --baseline N[/dim]")
    for warning in result["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {markup_safe(warning)}")
    err.print(markup_safe(result["verdict"]))


@app.command("stats")
def stats_cmd(db: Optional[Path] = DbOption, as_json: bool = typer.Option(False, "--json")):
    """Counts of documents, personas, duplicates and generations in the store."""
    from .export import store_stats

    settings = load_settings(db=db)
    try:
        with Store(settings.db, read_only=True) as store:
            stats = store_stats(store)
    except StoreLocked as exc:
        _print_running(exc, as_json, lambda status: {"running": status})
        return
    if as_json:
        print(json.dumps(stats))
        return
    table = Table("what", "count")
    table.add_row("documents", str(stats["documents"]))
    table.add_row("personas", str(stats["personas"]))
    for origin, n in stats["personas_by_origin"].items():
        table.add_row(cell(f"  origin {origin}"), str(n))
    table.add_row("personas marked (duplicate/reject)", str(stats["personas_marked"]))
    for task, by_model in stats["generations_by_model"].items():
        for model, by_status in by_model.items():
            table.add_row(cell(f"generations {task} ({model})"), cell(", ".join(f"{s} {n}" for s, n in by_status.items())))
    table.add_row("runs", cell(", ".join(f"{s} {n}" for s, n in stats["runs_by_status"].items()) or "0"))
    out.print(table)


app.command("dedup")(dedup_cmd)


@app.command("runs")
def runs_cmd(
    n: int = typer.Option(20, "--n", min=1, help="how many, newest first"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json", help="print a JSON array"),
):
    """Recent runs with their status (running, done, interrupted, failed, died) and counts."""
    settings = load_settings(db=db)
    try:
        with Store(settings.db, read_only=True) as store:
            runs = store.runs(limit=n)
    except StoreLocked as exc:
        _print_running(exc, as_json, lambda status: [as_run(status)])
        return
    if as_json:
        print(json.dumps(runs, default=str))
        return
    table = Table(Column("run", no_wrap=True), "task", "status", "done", "failed", "tokens", "seconds", "started", "notes")
    for r in runs:
        table.add_row(cell(r["id"]), cell(r["task"]), cell(r["status"]), str(r["items_done"]), str(r["items_failed"]),
                      str(r["completion_tokens"]), f"{r['seconds'] or 0:.1f}", str(r["started_at"])[:19],
                      cell("; ".join(r["notes"])))
    out.print(table)


def _print_running(locked: StoreLocked, as_json: bool, shape) -> None:
    """The store is locked by a run: what its status file says, or the lock error when there is none."""
    if locked.status is None:
        raise locked
    if as_json:
        print(json.dumps(shape(locked.status)))
    else:
        out.print(cell(describe(locked.status)))


@app.command("config")
def config_cmd(
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", autocompletion=complete_task,
                                         help="also show this task's options (a task, or a recipe file)"),
    db: Optional[Path] = DbOption,
    as_json: bool = typer.Option(False, "--json"),
):
    """Show the effective settings and where each came from (flag, environment, personahub.toml, default),
    with the options of the chosen backend and executor under them, and with --plugin TASK the task's."""
    from .task_option_sources import check_task_tables, env_prefix, resolve_task_options, table_name

    task_cls = None if plugin is None else api.resolve_task(plugin)
    for warning in check_task_tables(get_registry().tasks, task_cls):
        err.print(f"[yellow]warning:[/yellow] {markup_safe(warning)}", highlight=False)
    settings = load_settings(db=db)
    origins = settings_origins(db=db)
    registry = get_registry()
    _, resolved = api.chosen_backend(settings, registry)
    values = public_values({k: v for k, v in resolved.model_dump(mode="json").items() if k in origins})
    shown = {k: {"value": values[k], "from": origins[k]} for k in values}
    for kind, cls in (("backend", registry.backend(settings.backend)), ("executor", registry.executor(settings.executor))):
        _, option_origins = resolve_options(cls.Options, settings)
        options = public_values({k: resolved.model_extra[k] for k in option_origins})
        shown[f"{kind}_options"] = {k: {"value": options[k], "from": option_origins[k]} for k in options}
    if task_cls is not None:
        task_options, task_origins = resolve_task_options(task_cls, {})
        task_values = task_options.model_dump(mode="json")
        shown["task_options"] = {k: {"value": task_values[k], "from": task_origins[k]} for k in task_values}
    if as_json:
        print(json.dumps(shown, default=str))
        return
    table = Table("setting", "value", "from")
    for name, value in values.items():
        table.add_row(name, cell(value), origins[name])
    out.print(table)
    for kind, name in (("backend", settings.backend), ("executor", settings.executor)):
        options = shown[f"{kind}_options"]
        table = Table("option", "value", "from", title=f"options of {kind} {name} (-o NAME=VALUE)")
        for option, entry in options.items():
            table.add_row(option, cell(entry["value"]), entry["from"])
        out.print(table if options else f"{kind} {name} has no options of its own")
    if task_cls is not None:
        table = Table("option", "value", "from", title=markup_safe(
            f"options of task {task_cls.name} (--NAME, {env_prefix(task_cls.name)}NAME or [{table_name(task_cls.name)}])"))
        for option, entry in shown["task_options"].items():
            table.add_row(option, cell(entry["value"]), entry["from"])
        out.print(table if shown["task_options"] else f"task {markup_safe(task_cls.name)} has no options")


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
        out.print(Text.assemble((plain(row["id"]), "dim"), " ", plain(row["persona"])))


@personas_app.command("show")
def personas_show(persona_id: str = typer.Argument(...), db: Optional[Path] = DbOption):
    """One persona with its provenance, dedup marks and generations."""
    from .export import persona_details

    settings = load_settings(db=db)
    with Store(settings.db, read_only=True) as store:
        details = persona_details(store, persona_id, get_registry().tasks)
    print(json.dumps(details, indent=2, default=str))


@personas_app.command("search")
def personas_search(
    text: str = typer.Argument(..., help="what the personas should be like"),
    k: int = typer.Option(10, "--k", help="how many"),
    db: Optional[Path] = DbOption,
    embedding_model: Optional[str] = typer.Option(None, "--embedding-model", "--model", help=EMBEDDING_MODEL_HELP),
    backend: Optional[str] = typer.Option(None, "--backend", help="for a served embedding model: openai"),
    base_url: Optional[str] = typer.Option(None, "--base-url"),
    as_json: bool = typer.Option(False, "--json"),
):
    """The personas most similar to TEXT by embedding (sqlite-vec index, built on first use)."""
    from .vector_search import search_personas

    settings = load_settings(db=db, embedding_model=embedding_model, backend=backend, base_url=base_url)
    backend_class = get_registry().backend(settings.backend)
    with Store(settings.db) as store:
        hits = search_personas(store, settings, backend_class, text, k)
    if as_json:
        print(json.dumps(hits))
        return
    for hit in hits:
        out.print(Text.assemble(f"{hit['similarity']:.3f} ", (plain(hit["id"]), "dim"), " ", plain(hit["persona"])))


def _register_extra_commands() -> None:
    registry = get_registry()
    registry.manager.hook.register_commands(cli=app)


def _builtin_command(argv: list[str]) -> bool:
    """The command is one of ours, so plugins' commands need not be loaded (a faster start)."""
    ours = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    return bool(argv) and argv[0] in ours


def _list_declared_commands() -> None:
    """The plugins' commands for the top-level help, by the names they declare in their package's
    metadata (entry points in the group ``personahub.commands``): no plugin module is imported."""
    from importlib import metadata

    for ep in metadata.entry_points(group=COMMANDS_GROUP):
        package = ep.dist.metadata["Name"] if ep.dist is not None else ep.value
        app.command(ep.name, help=f"from the plugin package {package} (personahub {ep.name} --help)")(_declared)


def _declared() -> None:
    """Never run: a declared command is registered for real when it is called."""


def main() -> None:
    try:
        argv = sys.argv[1:]
        if argv[:1] in ([], ["--help"]) and not os.environ.get("_PERSONAHUB_COMPLETE"):  # not completing
            _list_declared_commands()
        elif not _builtin_command(argv):
            _register_extra_commands()
        app()  # standalone: typer prints its own usage errors and exits 2
    except PersonaHubError as exc:
        err.print(Text.assemble(("error:", "red"), " ", plain(exc)), highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # anything unexpected: one line unless debugging
        if os.environ.get("PERSONAHUB_DEBUG"):
            raise
        err.print(Text.assemble(("internal error:", "red"), f" {type(exc).__name__}: {plain(exc)} "
                                "(set PERSONAHUB_DEBUG=1 for the traceback)"),
                  highlight=False, soft_wrap=True)
        sys.exit(1)
