"""Exports: the rows ``personahub export`` writes (personas, or one task's rows in the released
schema, chosen by their verdicts) as a named query that callers count, stream or write, never SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple

import duckdb

from ..where import VERDICT_FIELDS, to_sql
from .personas import KEPT
from .summaries import OUTPUT_TEXT

if TYPE_CHECKING:
    import pyarrow as pa


class ExportQuery(NamedTuple):
    """One export's rows, as ``Store.export_query`` chose them: ``sql`` gives them in order. A task's
    ``--full`` rows come in steps instead (``Exports.export_relation``): ``sql`` gives their row ids in
    order, ``rows_sql`` the rows of a list of those ids (``$ids``) in its order, and ``rebuild`` makes
    their prompts in Python."""

    sql: str
    params: list
    rows_sql: str | None = None
    rebuild: Callable[[list[dict]], list[str]] | None = None


# What a row's prompts are rebuilt from (``personahub_core.replay.rebuild``): read under names of their
# own, after the exported columns, and dropped once the prompts are made.
REBUILD_INPUTS = ("task", "key", "input_id", "options", "raw_output", "item_data", "prompt_hash", "prompt")
# Rows read, given their prompts and written at once: ~50 MB of prompts; each read scans the personas once.
ROWS_PER_READ = 10_000


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



def _task_query(full: bool, include_all: bool, encoded: bool = False, kept: str = "TRUE") -> tuple[str, str | None]:
    """The SQL of a task's rows in order; with ``full``, of their row ids in order and of the rows of ``$ids``."""
    text = OUTPUT_TEXT
    cols = [
        "p.persona AS \"input persona\"",
        f"{'released_text(' + text + ')' if encoded else text} AS \"synthesized text\"",
        "coalesce(json_extract_string(g.output, '$.description'), g.task) AS description",
    ]
    status = "TRUE" if include_all else "g.status = 'ok'"
    chosen = f"WHERE g.task = ? AND {status} AND {kept} ORDER BY g.created_at, g.key"
    if not full:
        return f"SELECT {', '.join(cols)} FROM generations g LEFT JOIN personas p ON p.id = g.input_id {chosen}", None
    cols += ["g.key", "g.input_id AS persona_id", "g.task", "g.status", "g.error", "g.template",
             "g.template_version", "g.options", "g.model", "g.sampling", "g.seed", "g.prompt_tokens",
             "g.completion_tokens", "g.run_id", "g.created_at", "g.output"]
    cols += [f'g.{c}::VARCHAR AS "rebuild {c}"' for c in REBUILD_INPUTS]
    # DuckDB cannot spill a sort of rows this wide (it fails with "Out of Memory" under a limit), so it
    # sorts only their row ids; the rows are then read a list of ids at a time, with only their personas
    # (joined as one query, DuckDB put every persona in a hash table for each list).
    ids = f"SELECT g.rowid AS id FROM generations g {chosen}"
    rows = ("WITH g AS MATERIALIZED (SELECT g.*, o.pos FROM (SELECT unnest($ids) AS id, generate_subscripts($ids, 1) AS pos) o "
            "JOIN generations g ON g.rowid = o.id), "
            "p AS (SELECT id, persona FROM personas WHERE id IN (SELECT input_id FROM g)) "
            f"SELECT {', '.join(cols)} FROM g LEFT JOIN p ON p.id = g.input_id ORDER BY g.pos")
    return ids, rows


class Exports:
    def export_query(self, task: str | None, *, full: bool = False, include_all: bool = False,
                     verified: bool = False, where: list[str] | None = None,
                     encode: Callable[[str], str] | None = None,
                     rebuild: Callable[[list[dict]], list[str]] | None = None) -> ExportQuery:
        """The personas (``task`` None) or ``task``'s rows as exported: kept ones unless ``include_all``,
        provenance columns with ``full``, rows chosen by their verdicts (``verified``, ``where``), the
        synthesized text passed through ``encode`` if given (a task's own release encoding). A task's
        ``full`` rows carry their prompts as ``rebuild`` makes them: JSON ``{"prompts": [...], "check": ...}``
        for each of a batch of rows (dicts of ``REBUILD_INPUTS``)."""
        if task is None:
            return ExportQuery(_persona_query(full, include_all), [])
        if full and rebuild is None:
            raise TypeError("a task's full rows need `rebuild` to make their prompts")
        kept, params = verdict_filter(task, verified, where or [])
        if encode is not None:
            self._register_encoding(encode)
        sql, rows_sql = _task_query(full, include_all, encode is not None, kept)
        return ExportQuery(sql, [task, *params], rows_sql, rebuild if full else None)

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
        """The rows as a DuckDB relation: written to CSV or Parquet, or read as Arrow, by DuckDB itself.
        A task's ``--full`` rows are read whole for it; ``export_tables`` streams them."""
        if query.rebuild is None:
            return self.con.sql(query.sql, params=query.params or None)
        import pyarrow as pa

        return self.con.from_arrow(pa.concat_tables(self.export_tables(query)))

    def export_rows(self, query: ExportQuery, chunk: int = 10_000) -> tuple[list[str], Iterator[list[tuple]]]:
        """The column names, and the rows ``chunk`` at a time."""
        cursor = self.con.execute(query.sql, query.params)
        return [d[0] for d in cursor.description], iter(lambda: cursor.fetchmany(chunk), [])

    def export_tables(self, query: ExportQuery) -> Iterator[pa.Table]:
        """A task's ``--full`` rows in their order as Arrow tables of ``ROWS_PER_READ`` rows (at least one
        table), each row with the prompts ``query.rebuild`` makes for it, JSON columns typed ``pa.json_``.

        Nothing here holds more than one table: DuckDB cannot spill a sort of rows this wide, nor the
        prompts a Python function inside its query makes, so it sorts the row ids alone and each table
        is read by its ids, given its prompts in Python and finished by DuckDB."""
        import pyarrow as pa

        # Connections of their own: one streams the ids while the other reads the rows of each list.
        ids, rows = self.con.cursor(), self.con.cursor()
        try:
            none = rows.sql(query.rows_sql, params={"ids": []})
            json_columns = {name for name, kind in zip(none.columns, none.types) if str(kind) == "JSON"}
            tables = 0
            for chosen in ids.sql(query.sql, params=query.params or None).to_arrow_reader(ROWS_PER_READ):
                read = rows.sql(query.rows_sql, params={"ids": chosen.column(0).to_pylist()}).to_arrow_table()
                yield self._with_prompts(rows, read, query.rebuild, json_columns)
                tables += 1
            if not tables:  # no rows: the columns alone
                yield self._with_prompts(rows, none.to_arrow_table(), query.rebuild, json_columns)
        finally:
            ids.close()
            rows.close()

    @staticmethod
    def _with_prompts(con, read: pa.Table, rebuild, json_columns: set[str]) -> pa.Table:
        """``read`` (exported columns, then ``REBUILD_INPUTS``) with its prompts, as the export writes it."""
        import pyarrow as pa

        exported = read.column_names[: -len(REBUILD_INPUTS)]
        columns = (read.column(name).to_pylist() for name in read.column_names[len(exported):])
        inputs = [dict(zip(REBUILD_INPUTS, values)) for values in zip(*columns)]  # Table.to_pylist is slower
        table = read.select(exported).append_column("rebuilt", pa.array(rebuild(inputs), pa.string()))
        # The prompts' JSON as DuckDB wrote it when it called the rebuild itself; JSON columns typed again.
        cols = [f"{_quoted(name)}::JSON AS {_quoted(name)}" if name in json_columns else _quoted(name) for name in exported]
        cols += ["json_extract(rebuilt, '$.prompts') AS prompt", "json_extract_string(rebuilt, '$.check') AS prompt_check"]
        finished = con.from_arrow(table).select(", ".join(cols)).to_arrow_table()
        json_type = pa.json_(pa.string())
        for i, field in enumerate(finished.schema):
            if field.name in json_columns | {"prompt"}:
                finished = finished.set_column(i, field.with_type(json_type), finished.column(i).cast(json_type))
        return finished


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
