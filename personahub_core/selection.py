"""Choosing personas for downstream tasks: ``--where FIELD OP VALUE`` filters, bound as parameters.
The same filters choose exported rows by their verdicts (``export TASK --where 'score>=4'``).

Only known column names and operators are accepted; values never become SQL text.
"""

from __future__ import annotations

import json
import re
from typing import Iterator

from .errors import UsageError
from .store import MARKED, Store

FIELDS = {
    "id": "VARCHAR", "persona": "VARCHAR", "origin": "VARCHAR", "source_id": "VARCHAR",
    "parent_id": "VARCHAR", "hop": "INTEGER", "relation": "VARCHAR", "perspective": "VARCHAR",
    "task": "VARCHAR", "model": "VARCHAR",
}
# A verdict on a row (see ``export.VERDICTS``): its verifier's task, whether it passed, a judge's score,
# the share of agreeing solutions.
VERDICT_FIELDS = {"verdict": "VARCHAR", "passed": "BOOLEAN", "score": "DOUBLE", "agreement": "DOUBLE"}
# "~" is a case-insensitive substring match, the common "personas about X" filter.
OPERATORS = {"=": "=", "!=": "<>", "<=": "<=", ">=": ">=", "<": "<", ">": ">", "~": "ILIKE"}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$", re.S)


def parse_where(conditions: list[str], fields: dict[str, str] = FIELDS, alias: str = "p") -> tuple[str, list]:
    """Turn ``["hop<=2", "persona~nurse"]`` into a SQL fragment with ? placeholders and its values
    (``fields``: the names allowed and their types; ``alias``: the table they are columns of)."""
    clauses, params = [], []
    for text in conditions:
        m = _CONDITION.match(text)
        if not m:
            raise UsageError(f"--where {text!r}: expected FIELD OP VALUE with OP one of {' '.join(OPERATORS)}")
        field, op, value = m.groups()
        if field not in fields:
            raise UsageError(f"--where {text!r}: unknown field '{field}'; fields: {', '.join(fields)}")
        kind = fields[field]
        if kind == "INTEGER" or kind == "DOUBLE":
            if op == "~" or not re.fullmatch(r"-?\d+" if kind == "INTEGER" else r"-?\d+(\.\d*)?|-?\.\d+", value):
                whole = "a whole number" if kind == "INTEGER" else "a number"
                raise UsageError(f"--where {text!r}: '{field}' takes {whole} and = != < <= > >=")
            params.append(int(value) if kind == "INTEGER" else float(value))
        elif kind == "BOOLEAN":
            if op not in ("=", "!=") or value.lower() not in ("true", "false"):
                raise UsageError(f"--where {text!r}: '{field}' takes true or false and = !=")
            params.append(value.lower() == "true")
        elif op == "~":
            params.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        else:
            params.append(value)
        escape = " ESCAPE '\\'" if op == "~" else ""
        clauses.append(f"{alias}.{field} {OPERATORS[op]} ?{escape}")
    return (" AND ".join(clauses) or "TRUE"), params


def filtered_fields(conditions: list[str]) -> set[str]:
    """The fields a --where filter names (the filter is checked: a bad one is a usage error)."""
    parse_where(conditions)
    return {_CONDITION.match(text).group(1) for text in conditions}


def select_personas(store: Store, where: list[str] | None = None, include_duplicates: bool = False) -> list[dict]:
    """Personas in creation order, duplicates and rejects left out unless asked for."""
    return [p for chunk in iter_persona_chunks(store, where, include_duplicates) for p in chunk]


def iter_persona_chunks(store: Store, where: list[str] | None = None, include_duplicates: bool = False,
                        chunk: int = 10_000) -> Iterator[list[dict]]:
    """The same personas, a chunk at a time, so a run over 10^6 personas never holds them all.

    One ORDER BY over the whole table would sort every persona in memory before the first came out.
    Creation order is ``seq`` (a sequence, so it grows as rows are stored), so windows of ``chunk``
    seq values each read only their own row groups (DuckDB skips the others by their min/max) and
    sort only what they hold. Nothing is left open between chunks: the store stays free for other
    queries meanwhile."""
    clause, params = parse_where(where or [])
    dedup = "" if include_duplicates else f"AND NOT {MARKED}"  # the filter the store API applies
    first, last = store.con.execute("SELECT min(seq), max(seq) FROM personas").fetchone()
    if first is None:
        return
    for start in range(first, last + 1, chunk):
        rows = store.query_dicts(
            f"SELECT p.id, p.persona, p.origin, p.hop FROM personas p "
            f"WHERE p.seq >= {start} AND p.seq < {start + chunk} AND {clause} {dedup} ORDER BY p.seq", params
        )
        if rows:
            yield rows


def iter_row_chunks(store: Store, task: str, chunk: int = 10_000) -> Iterator[list[dict]]:
    """A task's finished rows (``key``, its ``persona``, ``text``, the whole ``output``), a chunk at a
    time in key order, for a verifier to judge. Each chunk starts after the last key of the one
    before, so nothing stays open between chunks; a task with no finished rows is a usage error."""
    if not store.scalar("SELECT count(*) FROM generations WHERE task = ? AND status = 'ok'", [task]):
        tasks = [r[0] for r in store.query("SELECT DISTINCT task FROM generations WHERE status = 'ok' ORDER BY 1")]
        raise UsageError(f"--task {task}: no finished rows of '{task}' to judge (tasks with rows: "
                         f"{', '.join(tasks) or 'none yet'})")
    last = ""
    while rows := store.query_dicts(
            "SELECT g.key, p.persona, json_extract_string(g.output, '$.\"synthesized text\"') AS text, "
            "g.output FROM generations g LEFT JOIN personas p ON p.id = g.input_id "
            "WHERE g.task = ? AND g.status = 'ok' AND g.key > ? ORDER BY g.key LIMIT ?", [task, last, chunk]):
        for row in rows:
            row["output"] = json.loads(row["output"]) if isinstance(row["output"], str) else row["output"]
        yield rows
        last = rows[-1]["key"]
