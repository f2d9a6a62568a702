"""Exports in PersonaHub's released schema, and read-only views of the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from .errors import UsageError
from .export_formats import ExportFormat
from .outputs import check_out, written
from .selection import VERDICT_FIELDS, parse_where
from .store import Store

KEPT = "NOT EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"
# DuckDB's memory while it sorts the rows for a file: past this it spills to disk instead of growing.
EXPORT_MEMORY = "256MB"
# Verdicts on a task's rows (``?``: the task), one per finished verifier row: a verifier stores each
# as a generation whose input is the judged row's key (``Verdict`` in personahub_core/tasks.py).
VERDICTS = ("SELECT v.input_id AS row_key, v.task AS verdict, json_extract(v.output, '$.passed')::BOOLEAN AS passed, "
            "TRY_CAST(json_extract(v.output, '$.score') AS DOUBLE) AS score, "
            "TRY_CAST(json_extract(v.output, '$.agreement') AS DOUBLE) AS agreement FROM generations v "
            "WHERE v.status = 'ok' AND json_extract_string(v.output, '$.verifies') = ?")


def _persona_query(full: bool, include_all: bool) -> str:
    cols = ["p.persona AS persona"]
    if full:
        cols += ["p.id", "p.origin", "p.source_id", "p.parent_id", "p.hop", "p.relation", "p.model",
                 "p.perspective", "p.task", "p.run_id", "p.created_at"]
        if include_all:
            cols += ["(SELECT string_agg(m.method || ':' || coalesce(m.duplicate_of, m.reason, ''), '; ') "
                     "FROM dedup_marks m WHERE m.persona_id = p.id) AS marked"]
    where = "TRUE" if include_all else KEPT
    return f"SELECT {', '.join(cols)} FROM personas p WHERE {where} ORDER BY p.seq"


def verdict_filter(task: str, verified: bool, where: list[str]) -> tuple[str, list]:
    """Which rows of ``task`` (alias g) the verdicts keep. ``verified``: rows with at least one verdict
    and no verdict that failed. ``where``: rows with one verdict meeting every condition."""
    clauses, params = [], []
    if verified:
        clauses.append(f"EXISTS (SELECT 1 FROM ({VERDICTS}) v WHERE v.row_key = g.key) AND "
                       f"NOT EXISTS (SELECT 1 FROM ({VERDICTS}) v WHERE v.row_key = g.key AND NOT v.passed)")
        params += [task, task]
    if where:
        condition, values = parse_where(where, VERDICT_FIELDS, alias="v")
        clauses.append(f"EXISTS (SELECT 1 FROM ({VERDICTS}) v WHERE v.row_key = g.key AND {condition})")
        params += [task, *values]
    return " AND ".join(clauses) or "TRUE", params



def _task_query(full: bool, include_all: bool, encoded: bool = False, kept: str = "TRUE") -> str:
    text = "json_extract_string(g.output, '$.\"synthesized text\"')"
    cols = [
        "p.persona AS \"input persona\"",
        f"{'released_text(' + text + ')' if encoded else text} AS \"synthesized text\"",
        "coalesce(json_extract_string(g.output, '$.description'), g.task) AS description",
    ]
    if full:
        cols += ["g.key", "g.input_id AS persona_id", "g.task", "g.status", "g.error", "g.template",
                 "g.template_version", "g.options", "g.model", "g.sampling", "g.seed", "g.prompt_tokens",
                 "g.completion_tokens", "g.run_id", "g.created_at", "g.output",
                 # Rebuilt from the item's input and raw outputs, checked against the stored hash.
                 "json_extract(g.rebuilt, '$.prompts') AS prompt", "json_extract_string(g.rebuilt, '$.check') AS prompt_check"]
    status = "TRUE" if include_all else "g.status = 'ok'"
    source = ("(SELECT *, rebuilt_prompts(task, key, input_id, options, raw_output, item_data, prompt_hash, prompt) "
              "AS rebuilt FROM generations)" if full else "generations")
    return (f"SELECT {', '.join(cols)} FROM {source} g LEFT JOIN personas p ON p.id = g.input_id "
            f"WHERE g.task = ? AND {status} AND {kept} ORDER BY g.created_at, g.key")


def export_query(store: Store, what: str, full: bool, include_all: bool, tasks: dict[str, type] | None = None,
                 verified: bool = False, where: list[str] | None = None) -> tuple[str, list]:
    """The SQL and parameters of an export: personas, or one task's rows (those the verdicts keep; written
    as the installed task in ``tasks`` encodes them, when it has its own ``released_text``)."""
    if what == "personas":
        if verified or where:
            raise UsageError("--verified and --where choose a task's rows by their verdicts; personas have none")
        return _persona_query(full, include_all), []
    stored = [r[0] for r in store.query("SELECT DISTINCT task FROM generations ORDER BY 1")]
    if what not in stored:
        raise UsageError(f"nothing stored for '{what}'; export 'personas' or one of: {', '.join(stored) or 'none yet'}")
    kept, params = verdict_filter(what, verified, where or [])
    return _task_query(full, include_all, _register_encoding(store, (tasks or {}).get(what)), kept), [what, *params]


def _register_encoding(store: Store, cls: type | None) -> bool:
    """``released_text(text)`` in SQL when the task class encodes its exported text its own way
    (``Synthesizer.released_text``); False when the text is exported as stored."""
    import pyarrow as pa

    from .tasks import Synthesizer

    if not (isinstance(cls, type) and issubclass(cls, Synthesizer)
            and cls.released_text.__func__ is not Synthesizer.released_text.__func__):
        return False

    def encode(texts):  # no annotations: DuckDB evaluates them in this module's globals
        return pa.array([None if t is None else cls.released_text(t) for t in texts.to_pylist()], pa.string())

    try:
        store.con.remove_function("released_text")
    except duckdb.Error:
        pass
    store.con.create_function("released_text", encode, ["VARCHAR"], "VARCHAR", type="arrow")
    return True


def export(store: Store, what: str, fmt: str, out_path: Path, full: bool = False, include_all: bool = False,
           quiet: bool = True, tasks: dict[str, type] | None = None, verified: bool = False,
           where: list[str] | None = None, formats: dict[str, type[ExportFormat]] | None = None) -> int:
    """Write personas or a task's rows in the format named ``fmt``, one of ``formats`` (the registered
    export formats by name; default: this module's files); ``tasks`` (the installed task classes by
    name) encode a task's ``synthesized text`` as its release did, and rebuild the prompts that ``full``
    adds to a task's rows; ``verified`` and ``where`` keep rows by their verdicts."""
    formats = FILE_FORMATS if formats is None else formats
    if fmt not in formats:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(formats)}")
    if not formats[fmt].selects_by_verdict and (verified or where):
        raise UsageError(f"--verified and --where are not supported with --format {fmt} yet; export jsonl or parquet")
    check_out(out_path, store.path)
    if full and what != "personas":
        from .replay import register_sql_function

        if tasks is None:
            raise TypeError("export(full=True) of a task's rows needs the installed tasks to rebuild its prompts")
        register_sql_function(store.con, tasks)
    return formats[fmt]().write(store, what, Path(out_path), full=full, include_all=include_all, quiet=quiet,
                                tasks=tasks, verified=verified, where=where or [])


class FileFormat(ExportFormat):
    """One file that DuckDB's query writes, whole or not at all (a temporary file renamed at the end)."""

    def write(self, store, what, out_path, *, full, include_all, quiet, tasks, verified, where) -> int:
        return _write_file(store, what, self.name, out_path, full, include_all, quiet, tasks, verified, where)


class JsonlFormat(FileFormat):
    name = "jsonl"
    description = "JSON Lines, one row per line"


class ParquetFormat(FileFormat):
    name = "parquet"
    description = "one Parquet file"


class CsvFormat(FileFormat):
    name = "csv"
    description = "CSV with a header"


FILE_FORMATS: dict[str, type[ExportFormat]] = {cls.name: cls for cls in (JsonlFormat, ParquetFormat, CsvFormat)}


def _write_file(store: Store, what: str, fmt: str, out_path: Path, full: bool, include_all: bool, quiet: bool,
                tasks: dict[str, type] | None, verified: bool, where: list[str]) -> int:
    if out_path.is_dir():
        raise UsageError(f"--out {out_path}: is a directory; give a file name, e.g. {out_path / ('out.' + fmt)}")
    if not out_path.parent.is_dir():
        problem = "is not a directory" if out_path.parent.exists() else "does not exist"
        raise UsageError(f"--out {out_path}: {out_path.parent} {problem}")
    if not os.access(out_path.parent, os.W_OK):
        raise UsageError(f"--out {out_path}: directory {out_path.parent} is not writable")
    sql, params = export_query(store, what, full, include_all, tasks, verified, where)
    with written(out_path) as tmp, store.tuned(memory_limit=EXPORT_MEMORY):
        return _write(store, sql, params, fmt, tmp, quiet)


def _write(store: Store, sql: str, params: list, fmt: str, tmp: Path, quiet: bool = True) -> int:
    from .progress import progress_bar

    n = 0
    total = store.scalar(f"SELECT count(*) FROM ({sql})", params)
    with progress_bar(f"export {fmt}", total=total, quiet=quiet) as progress:
        if fmt != "jsonl":  # DuckDB writes these in one call
            relation = store.con.sql(sql, params=params)
            if fmt == "csv":
                relation.write_csv(str(tmp), header=True)
            else:
                relation.write_parquet(str(tmp))
            progress.update(progress.task_ids[0], completed=total)
            return total
        # Batches of rows, one in Python at a time (fewer MB than Arrow batches, measured at 200k rows).
        rel = store.con.execute(sql, params)
        names = [d[0] for d in rel.description]
        with tmp.open("w", encoding="utf-8") as f:
            while rows := rel.fetchmany(10_000):
                progress.update(progress.task_ids[0], advance=len(rows))
                for row in rows:
                    record = dict(zip(names, row))
                    for key in ("options", "sampling", "output", "prompt"):
                        if isinstance(record.get(key), str):
                            record[key] = json.loads(record[key])
                    f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                    n += 1
    return n


def store_stats(store: Store) -> dict:
    generations: dict[str, dict[str, int]] = {}
    by_model: dict[str, dict[str, dict[str, int]]] = {}
    rows = store.query("SELECT task, coalesce(model, '?'), status, count(*) FROM generations GROUP BY ALL ORDER BY ALL")
    for task, model, status, n in rows:
        generations.setdefault(task, {}).setdefault(status, 0)
        generations[task][status] += n
        by_model.setdefault(task, {}).setdefault(model, {})[status] = n
    runs_by_status: dict[str, int] = {}
    for run in store.runs():
        runs_by_status[run["status"]] = runs_by_status.get(run["status"], 0) + 1
    return {
        "documents": store.count("documents"),
        "personas": store.count("personas"),
        "personas_by_origin": dict(store.query("SELECT origin, count(*) FROM personas GROUP BY 1 ORDER BY 1")),
        "personas_marked": store.scalar("SELECT count(DISTINCT persona_id) FROM dedup_marks"),
        "marks_by_method": dict(store.query("SELECT method, count(*) FROM dedup_marks GROUP BY 1 ORDER BY 1")),
        "generations": generations,
        "generations_by_model": by_model,
        "runs": store.count("runs"),
        "runs_by_status": runs_by_status,
    }


def persona_details(store: Store, persona_id: str, tasks: dict[str, type]) -> dict:
    rows = store.query_dicts("SELECT * FROM personas WHERE id = ?", [persona_id])
    if not rows:
        raise UsageError(f"no persona with id '{persona_id}'")
    details = rows[0]
    details["marks"] = store.query_dicts("SELECT method, cluster_id, duplicate_of, similarity, reason FROM dedup_marks WHERE persona_id = ?", [persona_id])
    # The generation that made this persona, then those made from it, each with its prompts rebuilt.
    rows = store.query_dicts(
        "SELECT key, task, status, output, error, input_id, options, raw_output, item_data, prompt_hash, prompt, "
        "template_version, key = ? AS made_this FROM generations WHERE key = ? OR input_id = ? "
        "ORDER BY made_this DESC, created_at", [details.get("generation_key"), details.get("generation_key"), persona_id])
    from .replay import rebuild

    details["generations"] = []
    for row in rows:
        prompts, check = rebuild(row, tasks)
        shown = {k: row[k] for k in ("key", "task", "status", "output", "error")}
        shown["role"] = "made this persona" if row["made_this"] else "made from this persona"
        details["generations"].append({**shown, "prompts": prompts, "prompt_check": check})
    return details
