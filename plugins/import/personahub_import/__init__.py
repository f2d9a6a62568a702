"""Import personas: PersonaHub's released ``{"persona": ...}`` jsonl (optionally with an id; .jsonl,
.ndjson or .json, any case, optionally .gz), or plain text with one persona per line. Invalid lines (bad
JSON, a persona that is not a JSON string, a line over 8 MiB) are reported with their line numbers and
skipped; a file with no usable line at all is an input error.

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
from personahub_core.ingest import (LINES_AS, MAX_LINE_BYTES, file_error, file_progress, json_line,
                                    input_format, json_records_sql, normalised, not_text, open_text, stripped)
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
        return input_format(self.options.input) in (".jsonl", ".ndjson", ".json")

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
                if not read:
                    raise UsageError(self.nothing_usable(rejected, bad))
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
        names = {"CAST": "invalid JSON", "LINE SIZE OVER MAXIMUM": f"line longer than {MAX_LINE_BYTES // 2**20} MiB"}
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
        problems = rejected + (self.located(MAX_REPORTED) if bad else [])
        for n, problem in sorted(problems)[:MAX_REPORTED]:
            ctx.note(f"{path}:{n}: {problem}; skipped")
        if len(rejected) + bad > MAX_REPORTED:
            ctx.note(f"... {len(rejected) + bad} invalid lines in all")

    def located(self, limit: int) -> list[tuple[int, str]]:
        """(line, problem) for the first lines SQL counted as unusable (DuckDB names the lines it refused)."""
        found: list[tuple[int, str]] = []
        with open_text(self.options.input) as f:
            for n, line in enumerate(f, start=1):
                if len(found) >= limit:
                    break
                problem = self.parse_problem(line) if line.strip() else None
                if problem and problem != "invalid JSON":
                    found.append((n, problem))
        return found

    def nothing_usable(self, rejected: list[tuple[int, str]], bad: int) -> str:
        """The one line for a file that gives no persona at all: empty, without the field, or all bad."""
        path, name = self.options.input, self.options.field
        if not rejected and not bad:
            return f"{path}: empty file, no personas in it"
        line, problem = min(rejected + (self.located(1) if bad else []), default=(None, None))
        if problem is None:  # counted unusable by SQL, yet no line found: say so without a line number
            return f"{path}: no line of the file gives a persona"
        if problem == f"no '{name}' field":
            fields: set[str] = set()
            with open_text(path) as f:
                for _, text in zip(range(1000), f):  # enough lines to say which fields the file has
                    row, _ = json_line(text) if text.strip() else (None, None)
                    fields.update(row if isinstance(row, dict) else ())
            return (f"{path}: no line has a usable '{name}' field (choose another with --field); "
                    f"fields found: {', '.join(sorted(fields)[:20]) or 'none'}")
        return f"{path}:{line}: {problem}; no line of the file gives a persona"

    def parse_problem(self, line: str) -> str | None:
        """Why a jsonl line gives no persona (None if it does)."""
        row, problem = json_line(line)
        if problem:
            return "invalid JSON" if problem.startswith("invalid JSON") else problem
        if not isinstance(row, dict):
            return "not a JSON object"
        if self.options.field not in row:
            return f"no '{self.options.field}' field"
        if (why := not_text(row[self.options.field])) is not None:
            return f"'{self.options.field}' {why}"
        return None


@hookimpl
def register_tasks(register):
    register(ImportPersonas)
