"""``--where FIELD OP VALUE`` filters: parsed once into conditions, turned into SQL with the values bound
as parameters. They choose personas (``--where 'hop<=2'``) and exported rows by their verdicts
(``export TASK --where 'score>=4'``).

Only known field names and operators are accepted; values never become SQL text.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, NamedTuple

from .errors import UsageError

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


class Condition(NamedTuple):
    """One checked filter: a known field, an operator of ``OPERATORS`` and a value of the field's type."""

    field: str
    op: str
    value: Any


def parse(conditions: Iterable[str | Condition] | None, fields: dict[str, str] = FIELDS) -> list[Condition]:
    """Check ``["hop<=2", "persona~nurse"]`` against ``fields`` (the names allowed and their types); a
    bad one is a usage error naming it. Conditions parsed before pass through as they are."""
    return [text if isinstance(text, Condition) else _parse_one(text, fields) for text in conditions or []]


def _parse_one(text: str, fields: dict[str, str]) -> Condition:
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
        return Condition(field, op, int(value) if kind == "INTEGER" else float(value))
    if kind == "BOOLEAN":
        if op not in ("=", "!=") or value.lower() not in ("true", "false"):
            raise UsageError(f"--where {text!r}: '{field}' takes true or false and = !=")
        return Condition(field, op, value.lower() == "true")
    return Condition(field, op, value)


def to_sql(conditions: Iterable[str | Condition] | None, fields: dict[str, str] = FIELDS,
           alias: str = "p") -> tuple[str, list]:
    """The conditions as one SQL fragment on the columns of ``alias``, with ? placeholders, and its values."""
    clauses, params = [], []
    for c in parse(conditions, fields):
        if c.op == "~":
            params.append("%" + c.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
            clauses.append(f"{alias}.{c.field} ILIKE ? ESCAPE '\\'")
        else:
            params.append(c.value)
            clauses.append(f"{alias}.{c.field} {OPERATORS[c.op]} ?")
    return (" AND ".join(clauses) or "TRUE"), params


def filtered_fields(conditions: Iterable[str | Condition] | None) -> set[str]:
    """The fields a --where filter names (the filter is checked: a bad one is a usage error)."""
    return {c.field for c in parse(conditions)}
