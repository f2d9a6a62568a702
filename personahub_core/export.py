"""Exports in PersonaHub's released schema, and read-only views of the store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import UsageError
from .export_formats import ExportFormat
from .outputs import check_out, written
from .store import ExportQuery, Store

# DuckDB's memory while it sorts the rows for a file: past this it spills to disk instead of growing.
EXPORT_MEMORY = "256MB"
def export_query(store: Store, what: str, full: bool, include_all: bool, tasks: dict[str, type] | None = None,
                 verified: bool = False, where: list[str] | None = None) -> ExportQuery:
    """The rows of an export: personas, or one task's rows (those the verdicts keep; written as the
    installed task in ``tasks`` encodes them, when it has its own ``released_text``)."""
    if what == "personas":
        if verified or where:
            raise UsageError("--verified and --where choose a task's rows by their verdicts; personas have none")
        return store.export_query(None, full=full, include_all=include_all)
    stored = store.stored_tasks()
    if what not in stored:
        raise UsageError(f"nothing stored for '{what}'; export 'personas' or one of: {', '.join(stored) or 'none yet'}")
    from .replay import rebuilt_json

    return store.export_query(what, full=full, include_all=include_all, verified=verified, where=where,
                              encode=_encoding((tasks or {}).get(what)), rebuild=rebuilt_json(tasks or {}))


def _encoding(cls: type | None):
    """The task class's own encoding of its exported text (``Synthesizer.released_text``), or None when
    the text is exported as stored."""
    from .tasks import Synthesizer

    if not (isinstance(cls, type) and issubclass(cls, Synthesizer)
            and cls.released_text.__func__ is not Synthesizer.released_text.__func__):
        return None
    return cls.released_text


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
    if full and what != "personas" and tasks is None:
        raise TypeError("export(full=True) of a task's rows needs the installed tasks to rebuild its prompts")
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
    query = export_query(store, what, full, include_all, tasks, verified, where)
    with written(out_path) as tmp, store.tuned(memory_limit=EXPORT_MEMORY):
        return _write(store, query, fmt, tmp, quiet)


def _write(store: Store, query: ExportQuery, fmt: str, tmp: Path, quiet: bool = True) -> int:
    from .progress import progress_bar

    n = 0
    total = store.export_count(query)
    with progress_bar(f"export {fmt}", total=total, quiet=quiet) as progress:
        if query.rebuild is not None:  # a task's --full rows: tables with their prompts, written one by one
            return _write_tables(store, query, fmt, tmp, lambda rows: progress.update(progress.task_ids[0], advance=rows))
        if fmt != "jsonl":  # DuckDB writes these in one call
            relation = store.export_relation(query)
            if fmt == "csv":
                relation.write_csv(str(tmp), header=True)
            else:
                relation.write_parquet(str(tmp))
            progress.update(progress.task_ids[0], completed=total)
            return total
        # Batches of rows, one in Python at a time (fewer MB than Arrow batches, measured at 200k rows).
        names, chunks = store.export_rows(query, 10_000)
        with tmp.open("w", encoding="utf-8") as f:
            for rows in chunks:
                progress.update(progress.task_ids[0], advance=len(rows))
                n += _write_lines(f, names, rows)
    return n


def _write_lines(f, names: list[str], rows: list[tuple]) -> int:
    """JSON lines, the JSON columns as JSON."""
    for row in rows:
        record = dict(zip(names, row))
        for key in ("options", "sampling", "output", "prompt"):
            if isinstance(record.get(key), str):
                record[key] = json.loads(record[key])
        f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return len(rows)


def _write_tables(store: Store, query: ExportQuery, fmt: str, tmp: Path, advance) -> int:
    """A task's ``--full`` rows, an Arrow table at a time: jsonl and csv as the same lines one DuckDB
    query writes, Parquet by pyarrow (a row group a table)."""
    import pyarrow.parquet as pq

    n, parquet, part = 0, None, tmp.with_name(tmp.name + ".part")
    try:
        for table in store.export_tables(query):
            if fmt == "parquet":
                parquet = parquet or pq.ParquetWriter(str(tmp), table.schema)
                parquet.write_table(table)
            elif fmt == "jsonl":
                with tmp.open("a", encoding="utf-8") as f:
                    for rows in table.to_batches(1000):  # Python objects for a thousand rows at a time
                        _write_lines(f, rows.schema.names, list(zip(*(column.to_pylist() for column in rows.columns))))
            else:  # DuckDB writes each table's lines, the header before the first only
                store.con.from_arrow(table).write_csv(str(part), header=n == 0)
                with tmp.open("ab") as f, part.open("rb") as lines:
                    shutil.copyfileobj(lines, f)
            n += table.num_rows
            advance(table.num_rows)
    finally:
        if parquet is not None:
            parquet.close()
        part.unlink(missing_ok=True)
    return n


def store_stats(store: Store) -> dict:
    generations: dict[str, dict[str, int]] = {}
    by_model: dict[str, dict[str, dict[str, int]]] = {}
    for task, model, status, n in store.generation_counts():
        generations.setdefault(task, {}).setdefault(status, 0)
        generations[task][status] += n
        by_model.setdefault(task, {}).setdefault(model, {})[status] = n
    runs_by_status: dict[str, int] = {}
    for run in store.runs():
        runs_by_status[run["status"]] = runs_by_status.get(run["status"], 0) + 1
    return {
        "documents": store.count("documents"),
        "personas": store.count("personas"),
        "personas_by_origin": store.personas_by_origin(),
        "personas_marked": store.marked_count(),
        "marks_by_method": {method: n for method, n, _ in store.marks_by_method()},
        "generations": generations,
        "generations_by_model": by_model,
        "runs": store.count("runs"),
        "runs_by_status": runs_by_status,
    }


def persona_details(store: Store, persona_id: str, tasks: dict[str, type]) -> dict:
    details = store.persona(persona_id)
    if details is None:
        raise UsageError(f"no persona with id '{persona_id}'")
    details["marks"] = store.persona_marks(persona_id)
    # The generation that made this persona, then those made from it, each with its prompts rebuilt.
    rows = store.persona_generations(persona_id, details.get("generation_key"))
    from .replay import rebuild

    details["generations"] = []
    for row in rows:
        prompts, check = rebuild(row, tasks)
        shown = {k: row[k] for k in ("key", "task", "status", "output", "error")}
        shown["role"] = "made this persona" if row["made_this"] else "made from this persona"
        details["generations"].append({**shown, "prompts": prompts, "prompt_check": check})
    return details
