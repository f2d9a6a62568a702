"""Exports: the rows ``personahub export`` writes (personas, or one task's rows in the released
schema, chosen by their verdicts) as a named query that callers count, stream or write, never SQL."""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import duckdb

from ..where import VERDICT_FIELDS, to_sql
from .personas import KEPT
from .summaries import OUTPUT_TEXT


class ExportQuery(NamedTuple):
    """One export's rows, as ``Store.export_query`` chose them."""

    sql: str
    params: list


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
        condition, values = to_sql(where, VERDICT_FIELDS, alias="v")
        clauses.append(f"EXISTS (SELECT 1 FROM ({VERDICTS}) v WHERE v.row_key = g.key AND {condition})")
        params += [task, *values]
    return " AND ".join(clauses) or "TRUE", params



def _task_query(full: bool, include_all: bool, encoded: bool = False, kept: str = "TRUE") -> str:
    text = OUTPUT_TEXT
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


class Exports:
    def export_query(self, task: str | None, *, full: bool = False, include_all: bool = False,
                     verified: bool = False, where: list[str] | None = None,
                     encode: Callable[[str], str] | None = None) -> ExportQuery:
        """The personas (``task`` None) or ``task``'s rows as exported: kept ones unless ``include_all``,
        provenance columns with ``full``, rows chosen by their verdicts (``verified``, ``where``), the
        synthesized text passed through ``encode`` if given (a task's own release encoding)."""
        if task is None:
            return ExportQuery(_persona_query(full, include_all), [])
        kept, params = verdict_filter(task, verified, where or [])
        if encode is not None:
            self._register_encoding(encode)
        return ExportQuery(_task_query(full, include_all, encode is not None, kept), [task, *params])

    def _register_encoding(self, encode: Callable[[str], str]) -> None:
        """``released_text(text)`` in SQL, calling ``encode`` on each text (nulls stay null)."""
        import pyarrow as pa

        def released_text(texts):  # no annotations: DuckDB evaluates them in this module's globals
            return pa.array([None if t is None else encode(t) for t in texts.to_pylist()], pa.string())

        try:
            self.con.remove_function("released_text")
        except duckdb.Error:
            pass
        self.con.create_function("released_text", released_text, ["VARCHAR"], "VARCHAR", type="arrow")

    def export_count(self, query: ExportQuery) -> int:
        return self.scalar(f"SELECT count(*) FROM ({query.sql})", query.params)

    def export_relation(self, query: ExportQuery) -> duckdb.DuckDBPyRelation:
        """The rows as a DuckDB relation: written to CSV or Parquet, or read as Arrow, by DuckDB itself."""
        return self.con.sql(query.sql, params=query.params or None)

    def export_rows(self, query: ExportQuery, chunk: int = 10_000) -> tuple[list[str], Iterator[list[tuple]]]:
        """The column names, and the rows ``chunk`` at a time."""
        cursor = self.con.execute(query.sql, query.params)
        return [d[0] for d in cursor.description], iter(lambda: cursor.fetchmany(chunk), [])
