"""The DuckDB store: the system of record for documents, personas, dedup marks, generations and runs.

Nothing is deleted by a stage: dedup marks, failures keep their raw output and error. Every unit of work
has a deterministic key, so a resumed run only adds what is missing.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from .errors import PersonaHubError


class StoreError(PersonaHubError):
    """The store cannot be used: in use, corrupt, unreadable. One line, shown as is."""


MIGRATIONS: list[str] = []
migration = MIGRATIONS.append

migration(
    """
    CREATE SEQUENCE doc_seq;
    -- No key constraints: DuckDB's indexes make bulk appends slow; ingest keeps id and hash unique itself.
    CREATE TABLE documents (
        id VARCHAR NOT NULL,              -- original id when the corpus has one, else the content hash
        seq BIGINT DEFAULT nextval('doc_seq'),
        content_hash VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        source_file VARCHAR,
        ingested_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE SEQUENCE persona_seq;
    CREATE TABLE personas (
        id VARCHAR PRIMARY KEY,
        seq BIGINT DEFAULT nextval('persona_seq'),  -- creation order: the earliest of a duplicate cluster is kept
        persona VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,          -- text | expansion | import
        source_id VARCHAR,                -- document the persona came from
        parent_id VARCHAR,                -- persona it was expanded from
        hop INTEGER DEFAULT 0,
        relation VARCHAR,
        perspective VARCHAR,
        note VARCHAR,                     -- provenance detail, e.g. "source text truncated"
        task VARCHAR,
        model VARCHAR,
        generation_key VARCHAR,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE dedup_marks (
        persona_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- minhash | embedding | quality | ...
        cluster_id VARCHAR,
        duplicate_of VARCHAR,
        similarity DOUBLE,
        reason VARCHAR,
        run_id VARCHAR,
        marked_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (persona_id, method)
    );
    CREATE TABLE generations (
        key VARCHAR PRIMARY KEY,          -- deterministic per unit of work
        task VARCHAR NOT NULL,
        input_id VARCHAR,                 -- persona or document id
        status VARCHAR NOT NULL,          -- ok | rejected | failed
        output JSON,                      -- parsed result
        raw_output JSON,                  -- list of raw completions, one per step
        prompt JSON,                      -- list of prompts, one per step
        error VARCHAR,
        template VARCHAR,
        template_version VARCHAR,
        options JSON,
        model VARCHAR,
        sampling JSON,
        seed BIGINT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        seconds DOUBLE,
        attempts INTEGER DEFAULT 1,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE runs (
        id VARCHAR PRIMARY KEY,
        task VARCHAR NOT NULL,
        status VARCHAR NOT NULL,          -- running | done | interrupted | failed
        settings JSON,
        options JSON,
        items_done INTEGER DEFAULT 0,
        items_failed INTEGER DEFAULT 0,
        completion_tokens BIGINT DEFAULT 0,
        seconds DOUBLE,
        started_at TIMESTAMP DEFAULT current_timestamp,
        finished_at TIMESTAMP
    );
    CREATE TABLE llm_cache (
        key VARCHAR PRIMARY KEY,          -- hash of model, prompt and sampling parameters
        text VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        finish_reason VARCHAR
    );
    """
)

# Deduplication: which personas each method has checked (so runs are incremental), MinHash
# signatures (new personas are compared with kept ones without rehashing them) and embeddings
# (the sqlite-vec index beside the store is rebuilt from these). No primary keys: rows are
# written in bulk by one writer that only adds what is missing, and keys would slow that down.
migration(
    """
    CREATE TABLE dedup_checked (
        persona_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- minhash | embedding | quality
        run_id VARCHAR
    );
    CREATE TABLE minhash_signatures (
        persona_id VARCHAR NOT NULL,
        num_perm INTEGER NOT NULL,
        ngram INTEGER NOT NULL,
        signature BLOB NOT NULL           -- num_perm little-endian uint32 minima
    );
    CREATE TABLE embeddings (
        persona_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL,           -- backend:model that made the vector
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,             -- dim little-endian float32, L2-normalised
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    """
)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Store:
    """One open DuckDB file. DuckDB allows a single writing process, which is our run lock."""

    def __init__(self, path: str | os.PathLike, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._check_path()
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                raise StoreError(f"store {self.path} is in use by another run (DuckDB lock held)") from None
            raise StoreError(f"cannot open store {self.path}: {msg.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"{self.path} is not a PersonaHub store: {str(exc).splitlines()[0]}") from None
        # DuckDB's own progress bar would write to stdout, where --json summaries go.
        self.con.execute("SET enable_progress_bar = false")
        if not read_only:
            self._migrate()

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory")
        if self.path.exists():
            if not os.access(self.path, os.R_OK):
                raise StoreError(f"store {self.path} is not readable")
            with self.path.open("rb") as f:
                head = f.read(12)
            # A DuckDB file carries the magic "DUCK" at byte 8; anything else must not be touched.
            if len(head) < 12 or head[8:12] != b"DUCK":
                raise StoreError(f"{self.path} is not a DuckDB file; refusing to touch it")
        else:
            if self.read_only:
                raise StoreError(f"store {self.path} does not exist (run 'personahub ingest' or a task first)")
            parent = self.path.parent
            if not parent.exists():
                raise StoreError(f"store directory {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise StoreError(f"store directory {parent} is not writable")

    def _migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        done = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            with self.transaction():
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, now()])

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- queries -------------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def query_dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.con.execute(sql, list(params)).fetchall()  # fetch all: DuckDB 2 refuses new work on an unfinished result
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT count(*) FROM {table}")  # table names come from our code only

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, run_id: str, task: str, settings: dict, options: dict) -> None:
        self.con.execute(
            "INSERT INTO runs (id, task, status, settings, options, started_at) VALUES (?, ?, 'running', ?, ?, ?)",
            [run_id, task, json.dumps(settings, default=str), json.dumps(options, default=str), now()],
        )

    def finish_run(self, run_id: str, status: str, done: int, failed: int, tokens: int, seconds: float) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, items_done = ?, items_failed = ?, completion_tokens = ?, seconds = ?, "
            "finished_at = ? WHERE id = ?",
            [status, done, failed, tokens, seconds, now(), run_id],
        )

    # -- generations ---------------------------------------------------------------------------
    def existing_keys(self, keys: list[str], retry_failed: bool = False) -> set[str]:
        """Keys already done (and, unless retrying failures, already failed)."""
        if not keys:
            return set()
        status_filter = "AND status = 'ok'" if retry_failed else ""
        rows = self.con.execute(
            f"SELECT key FROM generations WHERE key IN (SELECT unnest(?)) {status_filter}", [keys]
        ).fetchall()
        return {r[0] for r in rows}

    def failed_attempts(self, keys: list[str]) -> dict[str, int]:
        rows = self.con.execute(
            "SELECT key, attempts FROM generations WHERE key IN (SELECT unnest(?)) AND status <> 'ok'", [keys]
        ).fetchall()
        return dict(rows)

    def write_generations(self, rows: list[dict], personas: list[dict]) -> None:
        """Write one batch of finished work items and the personas they made, atomically."""
        if not rows and not personas:
            return
        with self.transaction():
            for row in rows:
                # A retried failure replaces its row in place (attempts counts the tries).
                self.con.execute(
                    """
                    INSERT INTO generations (key, task, input_id, status, output, raw_output, prompt, error,
                        template, template_version, options, model, sampling, seed, prompt_tokens,
                        completion_tokens, seconds, run_id, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (key) DO UPDATE SET status = excluded.status, output = excluded.output,
                        raw_output = excluded.raw_output, prompt = excluded.prompt, error = excluded.error,
                        prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
                        seconds = excluded.seconds, run_id = excluded.run_id,
                        attempts = generations.attempts + 1
                    """,
                    [
                        row["key"], row["task"], row.get("input_id"), row["status"],
                        _json(row.get("output")), _json(row.get("raw_output")), _json(row.get("prompt")),
                        row.get("error"), row.get("template"), row.get("template_version"),
                        _json(row.get("options")), row.get("model"), _json(row.get("sampling")),
                        row.get("seed"), row.get("prompt_tokens"), row.get("completion_tokens"),
                        row.get("seconds"), row.get("run_id"), now(),
                    ],
                )
            if personas:
                self._insert_personas(personas)

    def insert_personas(self, personas: list[dict]) -> int:
        """Insert personas whose id is new; returns how many were added."""
        with self.transaction():
            return self._insert_personas(personas)

    def _insert_personas(self, personas: list[dict]) -> int:
        before = self.count("personas")
        cols = ["id", "persona", "origin", "source_id", "parent_id", "hop", "relation", "perspective",
                "note", "task", "model", "generation_key", "run_id"]
        self.con.executemany(
            f"INSERT INTO personas ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) ON CONFLICT (id) DO NOTHING",
            [[p.get(c, 0 if c == "hop" else None) for c in cols] for p in personas],
        )
        return self.count("personas") - before

    # -- cache ---------------------------------------------------------------------------------
    def cache_get(self, keys: list[str]) -> dict[str, tuple]:
        if not keys:
            return {}
        rows = self.con.execute(
            "SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM llm_cache "
            "WHERE key IN (SELECT unnest(?))",
            [keys],
        ).fetchall()
        return {r[0]: r[1:] for r in rows}

    def cache_put(self, rows: list[tuple]) -> None:
        if rows:
            self.con.executemany("INSERT INTO llm_cache VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING", rows)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def open_store(path: str | os.PathLike, read_only: bool = False) -> Store:
    return Store(path, read_only=read_only)
