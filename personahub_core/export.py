"""Exports in PersonaHub's released schema, and read-only views of the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UsageError
from .outputs import check_out, written
from .store import Store

FORMATS = ("jsonl", "parquet", "csv", "hf")
KEPT = "NOT EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"
# DuckDB's memory while it sorts the rows for a file: past this it spills to disk instead of growing.
EXPORT_MEMORY = "256MB"


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


def _task_query(full: bool, include_all: bool) -> str:
    cols = [
        "p.persona AS \"input persona\"",
        "json_extract_string(g.output, '$.\"synthesized text\"') AS \"synthesized text\"",
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
            f"WHERE g.task = ? AND {status} ORDER BY g.created_at, g.key")


def export_query(store: Store, what: str, full: bool, include_all: bool) -> tuple[str, list]:
    """The SQL and parameters of an export: personas, or one task's rows."""
    if what == "personas":
        return _persona_query(full, include_all), []
    tasks = [r[0] for r in store.query("SELECT DISTINCT task FROM generations ORDER BY 1")]
    if what not in tasks:
        raise UsageError(f"nothing stored for '{what}'; export 'personas' or one of: {', '.join(tasks) or 'none yet'}")
    return _task_query(full, include_all), [what]


def export(store: Store, what: str, fmt: str, out_path: Path, full: bool = False, include_all: bool = False,
           quiet: bool = True, tasks: dict[str, type] | None = None) -> int:
    """Write personas or a task's rows; ``tasks`` (the installed task classes by name) rebuild the prompts
    that ``full`` adds to a task's rows."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    check_out(out_path, store.path)
    if full and what != "personas":
        from .replay import register_sql_function

        if tasks is None:
            raise TypeError("export(full=True) of a task's rows needs the installed tasks to rebuild its prompts")
        register_sql_function(store.con, tasks)
    if fmt == "hf":  # a folder, not a file: a Hugging Face dataset with its card
        from .hf import export_hf

        return export_hf(store, what, out_path, full=full, include_all=include_all, quiet=quiet)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise UsageError(f"--out {out_path}: is a directory; give a file name, e.g. {out_path / ('out.' + fmt)}")
    if not out_path.parent.is_dir():
        problem = "is not a directory" if out_path.parent.exists() else "does not exist"
        raise UsageError(f"--out {out_path}: {out_path.parent} {problem}")
    if not os.access(out_path.parent, os.W_OK):
        raise UsageError(f"--out {out_path}: directory {out_path.parent} is not writable")
    sql, params = export_query(store, what, full, include_all)
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
