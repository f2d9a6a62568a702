"""Exports in PersonaHub's released schema, and read-only views of the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import UsageError
from .store import Store

FORMATS = ("jsonl", "parquet", "csv")
KEPT = "NOT EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"


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
                 "g.completion_tokens", "g.run_id", "g.created_at", "g.output"]
    status = "TRUE" if include_all else "g.status = 'ok'"
    return (f"SELECT {', '.join(cols)} FROM generations g LEFT JOIN personas p ON p.id = g.input_id "
            f"WHERE g.task = ? AND {status} ORDER BY g.created_at, g.key")


def export(store: Store, what: str, fmt: str, out_path: Path, full: bool = False, include_all: bool = False) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    out_path = Path(out_path)
    if not out_path.parent.exists():
        raise UsageError(f"--out {out_path}: directory {out_path.parent} does not exist")
    if what == "personas":
        sql, params = _persona_query(full, include_all), []
    else:
        tasks = [r[0] for r in store.query("SELECT DISTINCT task FROM generations ORDER BY 1")]
        if what not in tasks:
            raise UsageError(f"nothing stored for '{what}'; export 'personas' or one of: {', '.join(tasks) or 'none yet'}")
        sql, params = _task_query(full, include_all), [what]
    # Write beside the target and rename, so a failed export never leaves half a file.
    tmp = out_path.with_name(f".{out_path.name}.partial")
    n = 0
    if fmt == "jsonl":
        rel = store.con.execute(sql, params)
        names = [d[0] for d in rel.description]
        with tmp.open("w", encoding="utf-8") as f:
            while rows := rel.fetchmany(10_000):
                for row in rows:
                    record = dict(zip(names, row))
                    for key in ("options", "sampling", "output"):
                        if isinstance(record.get(key), str):
                            record[key] = json.loads(record[key])
                    f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
                    n += 1
    else:
        n = store.scalar(f"SELECT count(*) FROM ({sql})", params)
        relation = store.con.sql(sql, params=params)
        if fmt == "csv":
            relation.write_csv(str(tmp), header=True)
        else:
            relation.write_parquet(str(tmp))
    os.replace(tmp, out_path)
    return n


def store_stats(store: Store) -> dict:
    generations: dict[str, dict[str, int]] = {}
    for task, status, n in store.query("SELECT task, status, count(*) FROM generations GROUP BY 1, 2 ORDER BY 1, 2"):
        generations.setdefault(task, {})[status] = n
    return {
        "documents": store.count("documents"),
        "personas": store.count("personas"),
        "personas_by_origin": dict(store.query("SELECT origin, count(*) FROM personas GROUP BY 1 ORDER BY 1")),
        "personas_marked": store.scalar("SELECT count(DISTINCT persona_id) FROM dedup_marks"),
        "marks_by_method": dict(store.query("SELECT method, count(*) FROM dedup_marks GROUP BY 1 ORDER BY 1")),
        "generations": generations,
        "runs": store.count("runs"),
    }


def persona_details(store: Store, persona_id: str) -> dict:
    rows = store.query_dicts("SELECT * FROM personas WHERE id = ?", [persona_id])
    if not rows:
        raise UsageError(f"no persona with id '{persona_id}'")
    details = rows[0]
    details["marks"] = store.query_dicts("SELECT method, cluster_id, duplicate_of, similarity, reason FROM dedup_marks WHERE persona_id = ?", [persona_id])
    details["generations"] = store.query_dicts(
        "SELECT key, task, status, output, error FROM generations WHERE input_id = ? ORDER BY created_at", [persona_id])
    return details
