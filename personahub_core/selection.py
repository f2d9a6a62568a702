"""Choosing personas for downstream tasks: ``--where FIELD OP VALUE`` filters, bound as parameters.

Only known column names and operators are accepted; values never become SQL text.
"""

from __future__ import annotations

import re
from typing import Iterator

from .errors import UsageError
from .store import MARKED, Store

FIELDS = {
    "id": "VARCHAR", "persona": "VARCHAR", "origin": "VARCHAR", "source_id": "VARCHAR",
    "parent_id": "VARCHAR", "hop": "INTEGER", "relation": "VARCHAR", "perspective": "VARCHAR",
    "task": "VARCHAR", "model": "VARCHAR",
}
# "~" is a case-insensitive substring match, the common "personas about X" filter.
OPERATORS = {"=": "=", "!=": "<>", "<=": "<=", ">=": ">=", "<": "<", ">": ">", "~": "ILIKE"}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$", re.S)


def parse_where(conditions: list[str]) -> tuple[str, list]:
    """Turn ``["hop<=2", "persona~nurse"]`` into a SQL fragment with ? placeholders and its values."""
    clauses, params = [], []
    for text in conditions:
        m = _CONDITION.match(text)
        if not m:
            raise UsageError(f"--where {text!r}: expected FIELD OP VALUE with OP one of {' '.join(OPERATORS)}")
        field, op, value = m.groups()
        if field not in FIELDS:
            raise UsageError(f"--where {text!r}: unknown field '{field}'; fields: {', '.join(FIELDS)}")
        if FIELDS[field] == "INTEGER":
            if op == "~" or not re.fullmatch(r"-?\d+", value):
                raise UsageError(f"--where {text!r}: '{field}' takes a whole number and = != < <= > >=")
            params.append(int(value))
        elif op == "~":
            params.append("%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        else:
            params.append(value)
        escape = " ESCAPE '\\'" if op == "~" else ""
        clauses.append(f"p.{field} {OPERATORS[op]} ?{escape}")
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
