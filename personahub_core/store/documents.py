"""Documents in: a file's records are staged in a table of their own (outside any transaction, so DuckDB
can spill a large file to disk), then added in one set-based insert, each text once. ``ingest.py`` says
how each format is read (the records query: text, source_id, bad); this room runs it."""

from __future__ import annotations

from ..text_sql import normalised


class Documents:
    def stage_records(self, records_sql: str, params: list) -> None:
        """Stage the records ingest's query reads from a file (``text``, ``source_id``, ``bad`` per record)."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE _incoming AS {records_sql}", params)

    def staged_rejects(self) -> list[tuple]:
        """(line, error type, line text) of each line DuckDB's reader refused while staging, in line
        order; the reader's reject tables are dropped."""
        if not self.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_rejected'"):
            return []
        rows = self.query("SELECT line, error_type, csv_line FROM _rejected ORDER BY line")
        self.con.execute("DROP TABLE _rejected; DROP TABLE _rejected_scans")
        return rows

    def stage_more(self, texts: list[str], source_ids: list[str | None]) -> None:
        """Stage records read again in Python (lines whose bad bytes were replaced)."""
        self.con.execute("INSERT INTO _incoming SELECT unnest(?), unnest(?), false", [texts, source_ids])

    def add_staged_documents(self, source_file: str) -> tuple[int, int, int]:
        """Add the staged texts not stored yet, in one transaction, in the file's order (text-to-persona
        reads documents in it); returns (texts read, unusable records, added)."""
        with self.transaction():
            read, bad = self.query("SELECT count(text), count(*) FILTER (WHERE bad) FROM _incoming")[0]
            before = self.count("documents")
            self.con.execute(
                f"""
                INSERT INTO documents (id, content_hash, text, source_file, source_id)
                SELECT g.h[:16], g.h, i.text, ?, i.source_id
                -- the first record of each text (the hash table holds no text), then its row
                FROM (SELECT sha256({normalised('text')}) AS h, min(rowid) AS n
                      FROM _incoming WHERE text IS NOT NULL GROUP BY 1) g
                JOIN _incoming i ON i.rowid = g.n
                WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.content_hash = g.h)
                ORDER BY g.n
                """,
                [source_file],
            )
            return read, bad, self.count("documents") - before

    def drop_staged(self) -> None:
        self.con.execute("DROP TABLE IF EXISTS _incoming")

    def parquet_columns(self, path: str) -> dict[str, str]:
        """Column name and DuckDB type of a Parquet file (a DuckDB error if it is not one)."""
        return dict(self.query("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))", [path]))
