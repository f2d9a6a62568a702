"""SQL for Python's whitespace handling of text (``str.split``, ``str.strip``), so texts cleaned in DuckDB
are byte for byte those Python would make: ingest, the import plugin and the store's documents share it."""

from __future__ import annotations

# Python's str.split() whitespace: the content hash has always been taken of " ".join(text.split()).
PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def normalised(sql: str) -> str:
    """SQL for " ".join(text.split()). Most texts (ASCII, single spaces) need nothing done, and cheap
    string tests find them, so only the others pay for the split and join."""
    other = PY_WHITESPACE.replace(" ", "")
    fix = (f"array_to_string(list_filter(string_split(translate({sql}, {sql_literal(other)}, {sql_literal(' ' * len(other))}), ' '), "
           "lambda w: w <> ''), ' ')")
    needs = (f"strlen({sql}) <> length({sql}) OR contains({sql}, '  ') OR starts_with({sql}, ' ') OR ends_with({sql}, ' ') "
             f"OR regexp_matches({sql}, '[\\t\\n\\x{{0b}}\\f\\r\\x{{1c}}-\\x{{1f}}]')")
    return f"CASE WHEN {needs} THEN {fix} ELSE {sql} END"


def stripped(sql: str) -> str:
    """SQL for text.strip(); trimming a set of characters is slow, so only texts that need it pay."""
    ws = sql_literal(PY_WHITESPACE)
    return f"CASE WHEN contains({ws}, {sql}[1]) OR contains({ws}, {sql}[-1]) THEN trim({sql}, {ws}) ELSE {sql} END"
