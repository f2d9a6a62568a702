"""Import personas: PersonaHub's released ``{"persona": ...}`` jsonl (optionally with an id), or plain
text with one persona per line. Invalid lines are reported with their line numbers and skipped.

The file goes through DuckDB's own reader (an in-memory DuckDB of the plugin's own) into one Arrow
table, and that into the store by ``add_personas``: a persona's id is a hash of its text and the id
the file gives it (kept as ``source_id``), so a different text under a repeated id is never lost, and
the same line imported twice is one persona. Exact duplicates under different ids are all kept, for
dedup to mark. Personas already stored are left out by the store's anti-join.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.ingest import LINES_AS, file_error, file_progress, json_records_sql, normalised, open_text, stripped
from personahub_core.tasks import PersonaSource

MAX_REPORTED = 5


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Path = Field(..., description="a .jsonl file of {\"persona\": ...} or a .txt file, one persona per line (.gz ok)")
    field: str = Field("persona", description="jsonl field holding the persona text")
    id_field: str = Field("id", description="jsonl field holding the original id, when present")


class ImportPersonas(PersonaSource):
    name = "import"
    description = "import personas from PersonaHub jsonl or text, one per line"
    Options = Options
    uses_backend = False

    def as_json(self) -> bool:
        return ".jsonl" in self.options.input.suffixes or ".json" in self.options.input.suffixes

    def records_sql(self) -> str:
        """(text, source_id, bad) per non-blank line."""
        if self.as_json():
            return json_records_sql(LINES_AS.format(type="JSON"), self.options.field, self.options.id_field)
        return (f"SELECT {stripped('v')} AS text, CAST(NULL AS VARCHAR) AS source_id, false AS bad "
                f"FROM {LINES_AS.format(type='VARCHAR')} WHERE v IS NOT NULL AND {stripped('v')} <> ''")

    def run(self, ctx) -> None:
        path = self.options.input
        if not path.is_file():
            raise UsageError(f"--input {path}: no such file")
        stats = ctx.stats
        # The file is read by a DuckDB of our own, in memory; the store sees only the finished personas.
        with file_progress("import", 1, ctx.quiet), duckdb.connect() as con:
            try:
                con.execute("SET memory_limit = '256MB'")  # a large file spills to disk instead of growing
                con.execute(f"CREATE TEMP TABLE _incoming AS {self.records_sql()}", [str(path)])
                rejected = self.rejects(ctx, con)
                read, bad = con.execute("SELECT count(text), count(*) FILTER (WHERE bad) FROM _incoming").fetchall()[0]
                # The id is work_key(persona), or work_key(source id, persona) when the file gives
                # one (the JSON work_key hashes, written in SQL), as earlier versions made it.
                personas = con.sql(f"""
                    SELECT 'imp-' || sha256('[' || CASE WHEN source_id IS NULL THEN '' ELSE
                               to_json(source_id)::VARCHAR || ', ' END || to_json(persona)::VARCHAR || ']')[:24] AS id,
                           persona, 'import' AS origin, coalesce(source_id, ?) AS source_id, 0 AS hop,
                           ? AS task, ? AS run_id
                    FROM (SELECT {normalised('text')} AS persona, source_id, min(rowid) AS n
                          FROM _incoming WHERE text IS NOT NULL GROUP BY 1, 2)
                    ORDER BY n
                """, params=[path.name, self.name, ctx.run_id]).to_arrow_table()
            except duckdb.Error as exc:
                raise file_error(path, exc) from None
            except (OSError, EOFError) as exc:
                raise file_error(path, exc) from None
        new, added = ctx.store.add_personas(personas, limit=ctx.limit)
        stats.items_done += added
        stats.personas_added += added
        # Under --limit, what the limit leaves out is neither done nor skipped.
        stats.items_skipped += read - (added if ctx.limit is None else new)
        stats.items_failed += bad + len(rejected)
        self.report(ctx, rejected, bad)

    def rejects(self, ctx, con) -> list[tuple[int, str]]:
        """(line, problem) for each line DuckDB's reader refused. Lines with invalid UTF-8 are taken
        from DuckDB's copy, the bad bytes replaced, and counted instead."""
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_rejected'").fetchall()[0][0]:
            return []
        rows = con.execute("SELECT line, error_type, csv_line FROM _rejected ORDER BY line").fetchall()
        names = {"CAST": "invalid JSON", "LINE SIZE OVER MAXIMUM": "line too long"}
        problems, fixed = [], []
        for line, kind, text in rows:
            if kind != "INVALID ENCODING":
                problems.append((line, names.get(kind, kind.lower())))
            elif (problem := self.parse_problem(text) if self.as_json() else None) is not None:
                problems.append((line, problem))
            else:
                row = json.loads(text) if self.as_json() else {}
                fixed.append((row.get(self.options.field, text), row.get(self.options.id_field)))
        if fixed:
            ctx.note(f"{len(fixed)} line(s) had invalid UTF-8, replaced")
            con.execute("INSERT INTO _incoming SELECT unnest(?), unnest(?), false",
                        [[t.strip() for t, _ in fixed], [None if i is None else str(i) for _, i in fixed]])
        return problems

    def report(self, ctx, rejected: list[tuple[int, str]], bad: int) -> None:
        path = self.options.input
        problems = list(rejected)
        if bad:  # SQL counted them; a short pass finds where the first ones are
            with open_text(path) as f:
                for n, line in enumerate(f, start=1):
                    if len(problems) >= len(rejected) + MAX_REPORTED:
                        break
                    problem = self.parse_problem(line) if line.strip() else None
                    if problem and problem != "invalid JSON":
                        problems.append((n, problem))
        for n, problem in sorted(problems)[:MAX_REPORTED]:
            ctx.note(f"{path}:{n}: {problem}; skipped")
        if len(rejected) + bad > MAX_REPORTED:
            ctx.note(f"... {len(rejected) + bad} invalid lines in all")

    def parse_problem(self, line: str) -> str | None:
        """Why a jsonl line gives no persona (None if it does)."""
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return "invalid JSON"
        if not isinstance(row, dict):
            return "not a JSON object"
        persona = row.get(self.options.field)
        if not isinstance(persona, str) or not persona.strip():
            return f"no '{self.options.field}' text"
        return None


@hookimpl
def register_tasks(register):
    register(ImportPersonas)
