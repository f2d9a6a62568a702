"""The DuckDB store: the system of record for documents, personas, dedup marks, generations and runs.

Nothing is deleted by a stage: dedup marks, failures keep their raw output and error. Every unit of work
has a deterministic key, so a resumed run only adds what is missing.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import duckdb

from .errors import PersonaHubError

if TYPE_CHECKING:
    import pyarrow as pa


# Runs started by this process and not yet finished: any other run marked 'running' has lost its process.
_LIVE_RUNS: set[str] = set()


class StoreError(PersonaHubError):
    """The store cannot be used: in use, corrupt, unreadable. One line, shown as is."""


class NotAStore(StoreError):
    """--db names a file that is not ours (another program's DuckDB database, or no DuckDB file at all)."""

    exit_code = 2


def is_duckdb_file(path: Path) -> bool:
    """Whether the file starts like a DuckDB database (the magic "DUCK" at byte 8)."""
    with path.open("rb") as f:
        head = f.read(12)
    return len(head) == 12 and head[8:12] == b"DUCK"


def disk_full(exc: BaseException) -> bool:
    """Whether an error from DuckDB or the OS means the file system is full."""
    return getattr(exc, "errno", None) == errno.ENOSPC or "no space left on device" in str(exc).lower()


class StoreLocked(StoreError):
    """Another process holds the store; ``status`` is how far its run has got (None if unknown)."""

    def __init__(self, path: Path, status: dict | None):
        from .status_file import describe

        self.status = status
        super().__init__(f"store {path} is in use by another run (DuckDB lock held)"
                         + (f"; {describe(status)}" if status else ""))


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

# Deduplication: which personas each method has checked (so runs are incremental) and persona
# embeddings (embedding dedup, search and the diversity study; the sqlite-vec index beside the store
# is rebuilt from these). No primary keys: rows are written in bulk by one writer that only adds what
# is missing, and keys would slow that down. (MinHash signatures were made here too: the minhash
# plugin's own migration makes that table now, the same, IF NOT EXISTS, so older stores keep theirs.)
migration(
    """
    CREATE TABLE dedup_checked (
        persona_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- minhash | embedding | quality
        run_id VARCHAR
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

# The diversity study: vectors of synthesized outputs (personas' vectors are in ``embeddings``).
migration(
    """
    CREATE TABLE output_embeddings (
        generation_key VARCHAR NOT NULL,
        model VARCHAR NOT NULL,           -- backend:model that made the vector
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,             -- dim little-endian float32, L2-normalised
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    """
)

# Runs record their process and keep their counts current, so a run killed with kill -9 shows what it
# did, and a later command can see that its process is gone.
migration(
    """
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host VARCHAR;
    ALTER TABLE runs ADD COLUMN updated_at TIMESTAMP;
    """
)

# A document's id is its content hash; the id it had in the corpus is kept beside it, so different
# texts that share a source id are all kept. Generations stop storing whole prompts (mostly a task's
# shared few-shot prefix): the item's input is kept instead, the prompts are rebuilt from it and the raw
# outputs on request, and prompt_hash says whether the rebuilt prompts are the ones that were sent.
migration(
    """
    ALTER TABLE documents ADD COLUMN source_id VARCHAR;
    ALTER TABLE generations ADD COLUMN item_data JSON;
    ALTER TABLE generations ADD COLUMN prompt_hash VARCHAR;
    """
)

# A run keeps its notes (what changed it: a setting lowered, the requests a server let it keep in flight),
# so `personahub runs` can show them after the run.
migration("ALTER TABLE runs ADD COLUMN notes JSON;")


# Plugins' own tables are made by their migrations (the register_migrations hook); this records
# which of each plugin's migrations a store has run.
migration(
    """
    CREATE TABLE plugin_migrations (
        owner VARCHAR NOT NULL,           -- the plugin that registered the migrations
        version INTEGER NOT NULL,         -- position in its list, from 1
        applied_at TIMESTAMP,
        PRIMARY KEY (owner, version)
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
        self._held: dict[str, str] = {}  # DuckDB settings a run chose, which tuned blocks return to
        self._check_path()
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                from .status_file import live_status

                raise StoreLocked(self.path, live_status(self.path)) from None
            raise StoreError(f"cannot open store {self.path}: {msg.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"{self.path} is not a PersonaHub store: {str(exc).splitlines()[0]}") from None
        # DuckDB's own progress bar would write to stdout, where --json summaries go.
        self.con.execute("SET enable_progress_bar = false")
        self._check_ours()
        if not read_only:
            self._migrate()

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"store path {self.path} is a directory")
        if self.path.exists():
            if not os.access(self.path, os.R_OK):
                raise StoreError(f"store {self.path} is not readable")
            if not is_duckdb_file(self.path):  # anything else must not be touched
                raise NotAStore(f"{self.path} is not a DuckDB file; refusing to touch it")
        else:
            if self.read_only:
                raise StoreError(f"store {self.path} does not exist (run 'personahub ingest' or a task first)")
            parent = self.path.parent
            if not parent.exists():
                raise StoreError(f"store directory {parent} does not exist")
            if not os.access(parent, os.W_OK):
                raise StoreError(f"store directory {parent} is not writable")

    def _check_ours(self) -> None:
        """Refuse another program's DuckDB database before anything is written to it: a store has our
        migrations table (an empty database, opened to write, becomes a store)."""
        tables = {r[0] for r in self.con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() UNION "
            "SELECT view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal").fetchall()}
        if "schema_migrations" not in tables and (tables or self.read_only):
            self.con.close()
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "") or "none"
            raise NotAStore(f"{self.path} is a DuckDB database but not a PersonaHub store (tables: {shown}); "
                             "refusing to touch it")

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
        except BaseException as exc:
            self.con.execute("ROLLBACK")
            if disk_full(exc):
                raise self.full() from None
            raise
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            if disk_full(exc):
                raise self.full() from None
            raise

    def full(self) -> StoreError:
        """The one line for a write that found the store's file system full (nothing of it was kept)."""
        return StoreError(f"store {self.path}: no space left on device; nothing of this write was kept")

    # -- queries -------------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def query_dicts(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def limit_memory(self, limit: str | None) -> None:
        """Cap DuckDB's memory for this connection (None: DuckDB's default). DuckDB keeps table blocks
        cached up to its limit, so without one a long run's peak grows with the store."""
        if limit is not None:
            self.con.execute(f"SET memory_limit = '{limit}'")  # the setting admits only sizes
            self._held["memory_limit"] = limit

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.con.execute(sql, list(params)).fetchall()  # fetch all: DuckDB 2 refuses new work on an unfinished result
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT count(*) FROM {table}")  # table names come from our code only

    # -- runs ----------------------------------------------------------------------------------
    def start_run(self, run_id: str, task: str, settings: dict, options: dict) -> None:
        self.mark_dead_runs()
        self.con.execute(
            "INSERT INTO runs (id, task, status, settings, options, started_at, pid, host, updated_at) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
            [run_id, task, json.dumps(settings, default=str), json.dumps(options, default=str), now(),
             os.getpid(), socket.gethostname(), now()],
        )
        _LIVE_RUNS.add(run_id)

    def update_run(self, run_id: str, done: int, failed: int, tokens: int) -> None:
        """Counts so far, written as the run goes (at each writer flush)."""
        self.con.execute(
            "UPDATE runs SET items_done = ?, items_failed = ?, completion_tokens = ?, updated_at = ? WHERE id = ?",
            [done, failed, tokens, now(), run_id],
        )

    def amend_run_options(self, run_id: str, values: dict) -> None:
        """Add what a task resolved while running (a threshold it looked up, say) to the run's options."""
        self.con.execute("UPDATE runs SET options = json_merge_patch(coalesce(options, '{}'), ?::JSON) WHERE id = ?",
                         [json.dumps(values), run_id])

    def finish_run(self, run_id: str, status: str, done: int, failed: int, tokens: int, seconds: float,
                   notes: list[str] | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, items_done = ?, items_failed = ?, completion_tokens = ?, seconds = ?, "
            "finished_at = ?, updated_at = ?, notes = ? WHERE id = ?",
            [status, done, failed, tokens, seconds, now(), now(), json.dumps(notes or []), run_id],
        )
        _LIVE_RUNS.discard(run_id)

    def mark_dead_runs(self) -> int:
        """Mark runs left 'running' by a process that is gone as 'died', with counts taken from the rows
        they wrote (a kill can land between a batch and its count); returns how many.

        DuckDB lets one process write a store, and we hold it: every 'running' run that is not this
        process's own has lost its process (killed, crashed, machine restarted)."""
        dead = [r[0] for r in self.query("SELECT id FROM runs WHERE status = 'running' "
                                         "AND NOT list_contains(?::VARCHAR[], id)", [sorted(_LIVE_RUNS)])]
        if not dead:
            return 0
        counts = self.rows_written(dead)
        done, failed = ([counts.get(i, (None, None))[k] for i in dead] for k in (0, 1))
        self.con.execute(
            "UPDATE runs SET status = 'died', finished_at = coalesce(updated_at, started_at), "
            "items_done = coalesce(c.done, items_done), items_failed = coalesce(c.failed, items_failed) "
            "FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::BIGINT[]) AS done, unnest(?::BIGINT[]) AS failed) c "
            "WHERE runs.id = c.id",
            [dead, done, failed],
        )
        return len(dead)

    def rows_written(self, run_ids: list[str]) -> dict[str, tuple[int, int]]:
        """(done, failed) per run as its rows tell: generations, else imported personas, else dedup checks."""
        sql = """
            SELECT run_id, count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status <> 'ok'), 1 AS kind
            FROM generations WHERE list_contains(?::VARCHAR[], run_id) GROUP BY 1
            UNION ALL
            SELECT run_id, count(*), 0, 2 FROM personas
            WHERE list_contains(?::VARCHAR[], run_id) AND generation_key IS NULL GROUP BY 1
            UNION ALL
            SELECT run_id, count(*), 0, 3 FROM dedup_checked WHERE list_contains(?::VARCHAR[], run_id) GROUP BY 1
            ORDER BY kind DESC
        """
        return {run_id: (done, failed) for run_id, done, failed, _ in self.query(sql, [run_ids] * 3)}

    def runs(self, limit: int | None = None) -> list[dict]:
        """Runs, newest first, as they really are: a 'running' run of a process that no longer holds the
        store shows as 'died' with the counts of its rows, even when read without write access."""
        runs = self.query_dicts(f"SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT {int(limit or 2**62)}")
        dead = [r for r in runs if r["status"] == "running" and r["id"] not in _LIVE_RUNS]
        counts = self.rows_written([r["id"] for r in dead]) if dead else {}
        for run in dead:
            run["status"] = "died"
            run["items_done"], run["items_failed"] = counts.get(run["id"], (run["items_done"], run["items_failed"]))
        for run in runs:
            run["notes"] = json.loads(run["notes"] or "[]")
        return runs

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

    def write_generations(self, rows: list[dict], personas: list[dict], stored_keys: set[str] | None = None) -> int:
        """Write one batch of finished work items and the personas they made, atomically, as columnar
        inserts. Returns how many personas were new.

        A row whose key is stored (a retried failure) replaces it. ``stored_keys``, when the caller
        knows them, lets every other row go in by a plain insert, several times cheaper than the
        upsert; a key wrongly left out of it fails the batch on the primary key, never doubles a row."""
        if not rows and not personas:
            return 0
        with self.transaction():
            if stored_keys is None:
                self._insert_generations(rows, upsert=True)
            else:
                self._insert_generations([r for r in rows if r["key"] not in stored_keys], upsert=False)
                self._insert_generations([r for r in rows if r["key"] in stored_keys], upsert=True)
            return self._insert_personas(personas) if personas else 0

    def _insert_generations(self, rows: list[dict], upsert: bool) -> None:
        if not rows:
            return
        stamp = now()
        table = _arrow({
            name: [_json(r.get(name)) for r in rows] if kind == "json" else
                  [stamp] * len(rows) if name == "created_at" else [r.get(name) for r in rows]
            for name, kind in GENERATION_COLUMNS.items()
        }, GENERATION_COLUMNS)
        names = ", ".join(GENERATION_COLUMNS)
        replaced = ", ".join(f"{c} = excluded.{c}" for c in REPLACED_ON_RETRY)
        conflict = f" ON CONFLICT (key) DO UPDATE SET {replaced}, attempts = generations.attempts + 1" if upsert else ""
        with self._registered("_generations_batch", table):
            # A retried failure replaces its row in place (attempts counts the tries).
            self.con.execute(f"INSERT INTO generations ({names}) SELECT {names} FROM _generations_batch{conflict}")

    def insert_personas(self, personas: list[dict]) -> int:
        """Insert personas whose id is new; returns how many were added."""
        with self.transaction():
            return self._insert_personas(personas)

    def _insert_personas(self, personas: list[dict]) -> int:
        if not personas:
            return 0
        unique = list({p["id"]: p for p in reversed(personas)}.values())[::-1]  # the first of an id wins
        table = _arrow({c: [p.get(c, 0 if c == "hop" else None) for p in unique] for c in PERSONA_COLUMNS},
                       PERSONA_COLUMNS)
        names = ", ".join(PERSONA_COLUMNS)
        before = self.count("personas")
        with self._registered("_personas_batch", table):
            # ON CONFLICT probes the key index per row; an anti-join would scan the whole table per batch.
            self.con.execute(f"INSERT INTO personas ({names}) SELECT {names} FROM _personas_batch ON CONFLICT (id) DO NOTHING")
        return self.count("personas") - before

    @contextmanager
    def _registered(self, name: str, table) -> Iterator[None]:
        self.con.register(name, table)
        try:
            yield
        finally:
            self.con.unregister(name)

    # -- the API for plugins (docs/plugins/store-api.md) -----------------------------------------
    # Plugins never touch the connection: these methods take and give Arrow and work on sets of
    # personas, never a row at a time. Table and column names are the plugin's own code, never user text.
    def persona_count(self) -> int:
        return self.count("personas")

    def document_count(self) -> int:
        return self.count("documents")

    def select_documents(self, columns: Sequence[str] = ("id", "text")) -> pa.Table:
        """The ingested documents as one Arrow table, in the order they were ingested."""
        unknown = [c for c in columns if c not in DOCUMENT_COLUMNS]
        if unknown:
            raise ValueError(f"documents have no column {unknown[0]!r}")
        return self.con.sql(f"SELECT {', '.join(columns)} FROM documents ORDER BY seq").to_arrow_table()

    def select_personas(self, *, unchecked_by: str | None = None, checked_by: str | None = None,
                        where: list[str] | None = None, limit: int | None = None, ids: pa.Array | None = None,
                        include_marked: bool = False, columns: Sequence[str] = ("seq", "id", "persona")) -> pa.Table:
        """Personas as one Arrow table, in creation order (with ``ids``: in their order, with a column
        ``position`` that indexes ``ids``). Marked personas are left out unless ``include_marked``;
        ``unchecked_by``/``checked_by`` keep those a dedup method has not / has checked; ``where`` is
        the user's ``--where`` filter."""
        sql, params, wanted = self._persona_sql(unchecked_by, checked_by, where, limit, ids, include_marked, columns)
        with self._registered("_wanted_ids", wanted) if wanted is not None else _nothing():
            return self.con.sql(sql, params=params or None).to_arrow_table()

    def stream_personas(self, *, batch_rows: int = 50_000, unchecked_by: str | None = None,
                        checked_by: str | None = None, where: list[str] | None = None, limit: int | None = None,
                        ids: pa.Array | None = None, include_marked: bool = False,
                        columns: Sequence[str] = ("seq", "id", "persona")) -> tuple[int, Iterator[pa.RecordBatch]]:
        """How many personas ``select_personas`` would give, and those personas in Arrow batches, read
        through a second connection: the store stays free for writes meanwhile, and a million texts are
        never held at once. Rows written while the batches are read are not seen by them."""
        sql, params, wanted = self._persona_sql(unchecked_by, checked_by, where, limit, ids, include_marked, columns)
        with self._registered("_wanted_ids", wanted) if wanted is not None else _nothing():
            count = self.scalar(f"SELECT count(*) FROM ({sql})", params)

        def batches() -> Iterator[pa.RecordBatch]:
            cursor = self.con.cursor()
            try:
                if wanted is not None:
                    cursor.register("_wanted_ids", wanted)
                yield from cursor.sql(sql, params=params or None).to_arrow_reader(batch_rows)
            finally:
                cursor.close()

        return count, batches()

    def _persona_sql(self, unchecked_by, checked_by, where, limit, ids, include_marked, columns):
        from .selection import parse_where  # selection builds on the store

        unknown = [c for c in columns if c not in PERSONA_COLUMNS and c != "seq"]
        if unknown:
            raise ValueError(f"personas have no column {unknown[0]!r}")
        clause, params = parse_where(where or [])
        conditions = [clause]
        if not include_marked:
            conditions.append(f"NOT {MARKED}")
        for method, negate in ((unchecked_by, "NOT "), (checked_by, "")):
            if method is not None:
                conditions.append(f"{negate}EXISTS (SELECT 1 FROM dedup_checked c WHERE c.persona_id = p.id "
                                  f"AND c.method = ?)")
                params.append(method)
        import numpy as np
        import pyarrow as pa

        names = [f"p.{c}" for c in columns]
        wanted = None
        if ids is None:
            source, order = "personas p", "p.seq"
        else:
            ids = _strings(ids)
            wanted = pa.table({"position": pa.array(np.arange(len(ids), dtype=np.int64)), "id": ids})
            source, order = "_wanted_ids w JOIN personas p ON p.id = w.id", "w.position"
            names.append("w.position")
        sql = f"SELECT {', '.join(names)} FROM {source} WHERE {' AND '.join(conditions)} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        return sql, params, wanted

    def add_personas(self, personas: pa.Table, limit: int | None = None) -> tuple[int, int]:
        """Add the personas (Arrow; columns from ``personas`` in the store: id and persona and origin at
        least) whose id is not stored yet, the first row of an id winning, in table order, at most
        ``limit`` of them. Returns (how many were new, how many were added)."""
        import numpy as np
        import pyarrow as pa

        names = [c for c in personas.column_names if c in PERSONA_COLUMNS]
        missing = {"id", "persona", "origin"} - set(names)
        if missing:
            raise ValueError(f"add_personas: the table has no column {sorted(missing)[0]!r}")
        rows = pa.table({**{c: personas.column(c) for c in names},
                         "_n": pa.array(np.arange(personas.num_rows, dtype=np.int64))})
        columns = ", ".join(names)
        new = "FROM _new_personas n WHERE NOT EXISTS (SELECT 1 FROM personas p WHERE p.id = n.id)"
        cap = "" if limit is None else f" LIMIT {max(int(limit), 0)}"
        with self._registered("_new_personas", rows), self.transaction():
            candidates = None if limit is None else self.scalar(f"SELECT count(DISTINCT id) {new}")
            before = self.count("personas")
            # In table order; a repeated id is left to the key (ON CONFLICT keeps the first).
            self.con.execute(f"INSERT INTO personas ({columns}) SELECT {columns} {new} ORDER BY _n{cap} "
                             f"ON CONFLICT (id) DO NOTHING")
            added = self.count("personas") - before
            return (added if candidates is None else candidates), added

    def mark_personas(self, method: str, run_id: str, checked_ids: Sequence[str] | pa.Array,
                      marks: list[dict] | pa.Table = ()) -> None:
        """Record, in one transaction, the personas ``method`` checked and the marks of those it drops:
        persona_id, and any of duplicate_of, cluster_id, similarity, reason. A marked persona is left out
        of every later selection, comparison and export (unless asked for); a checked one is not
        selected by ``unchecked_by=method`` again."""
        import pyarrow as pa

        if not isinstance(marks, pa.Table):
            marks = _arrow({c: [m.get(c) for m in marks] for c in MARK_COLUMNS}, MARK_COLUMNS)
        values = ", ".join(c if c in marks.column_names else "NULL" for c in MARK_COLUMNS)  # what a method leaves out
        with self._registered("_checked", _table(persona_id=_strings(checked_ids))), self._registered("_marks", marks):
            with self.transaction():
                self.con.execute("INSERT INTO dedup_checked SELECT persona_id, ?, ? FROM _checked", [method, run_id])
                self.con.execute(
                    f"INSERT OR IGNORE INTO dedup_marks ({', '.join(MARK_COLUMNS)}, method, run_id) "
                    f"SELECT {values}, ?, ? FROM _marks",
                    [method, run_id])

    def forget_method(self, method: str) -> None:
        """Drop a dedup method's marks and checks, so its next run looks at every persona again."""
        with self.transaction():
            self.con.execute("DELETE FROM dedup_marks WHERE method = ?", [method])
            self.con.execute("DELETE FROM dedup_checked WHERE method = ?", [method])

    def marked_count(self, method: str | None = None) -> int:
        if method is None:
            return self.scalar("SELECT count(DISTINCT persona_id) FROM dedup_marks")
        return self.scalar("SELECT count(*) FROM dedup_marks WHERE method = ?", [method])

    # A plugin's own tables (made by its migrations, see the register_migrations hook). ``where`` is SQL
    # on the table's columns, written ``t.column``, with ? for the values in ``params``.
    def read(self, table: str, columns: Sequence[str], *, where: str = "TRUE", params: Sequence[Any] = (),
             of_personas: dict | None = None, batch_rows: int | None = None) -> pa.Table | pa.RecordBatchReader:
        """Rows of a plugin's table as Arrow (a reader of ``batch_rows`` batches, if given). With
        ``of_personas`` (the filters of ``select_personas``: e.g. ``{"checked_by": "minhash"}``) only the
        rows whose ``persona_id`` is such a persona, in the personas' creation order."""
        names = ", ".join(f"t.{_name(c)}" for c in columns)
        sql, values = f"SELECT {names} FROM {_name(table)} t WHERE ({where})", list(params)
        if of_personas is not None:
            inner, inner_params, wanted = self._persona_sql(**{**PERSONA_FILTER, **of_personas, "columns": ("id", "seq")})
            if wanted is not None:
                raise ValueError("read(of_personas=...) takes filters, not ids")
            sql = (f"SELECT {names} FROM {_name(table)} t JOIN ({inner}) p ON p.id = t.persona_id "
                   f"WHERE ({where}) ORDER BY p.seq")
            values = inner_params + values
        relation = self.con.sql(sql, params=values or None)
        return relation.to_arrow_table() if batch_rows is None else relation.to_arrow_reader(batch_rows)

    def append(self, table: str, rows: pa.Table, constants: dict[str, Any] | None = None) -> None:
        """Append Arrow rows to a plugin's table in one insert; ``constants`` fill columns that are the
        same on every row (a model name, a setting)."""
        if rows.num_rows == 0:
            return
        constants = constants or {}
        names = ", ".join(_name(c) for c in [*rows.column_names, *constants])
        values = ", ".join([_name(c) for c in rows.column_names] + ["?"] * len(constants))
        with self._registered("_append_rows", rows):
            self.con.execute(f"INSERT INTO {_name(table)} ({names}) SELECT {values} FROM _append_rows",
                             list(constants.values()))

    def delete(self, table: str, *, where: str = "TRUE", params: Sequence[Any] = (),
               persona_ids: Sequence[str] | pa.Array | None = None, unchecked_by: str | None = None) -> None:
        """Delete rows of a plugin's table: those matching ``where``, and of them only those of
        ``persona_ids`` if given, and only those of personas ``unchecked_by`` has not checked if given."""
        conditions, values = [f"({where})"], list(params)
        if persona_ids is not None:
            conditions.append("t.persona_id IN (SELECT id FROM _delete_ids)")
        if unchecked_by is not None:
            conditions.append("NOT EXISTS (SELECT 1 FROM dedup_checked c WHERE c.persona_id = t.persona_id "
                              "AND c.method = ?)")
            values.append(unchecked_by)
        ids = None if persona_ids is None else _table(id=_strings(persona_ids))
        with self._registered("_delete_ids", ids) if ids is not None else _nothing():
            self.con.execute(f"DELETE FROM {_name(table)} t WHERE {' AND '.join(conditions)}", values)

    @contextmanager
    def tuned(self, **settings: Any) -> Iterator[None]:
        """DuckDB settings for the duration of a block (e.g. ``memory_limit="256MB"``), then back to the
        run's own (``limit_memory``) or DuckDB's default. A setting this DuckDB does not know is skipped."""
        changed = []
        try:
            for name, value in settings.items():
                try:
                    self.con.execute(f"SET {_name(name)} = '{value}'")
                    changed.append(name)
                except duckdb.Error:
                    pass
            yield
        finally:
            for name in changed:
                if name in self._held:
                    self.con.execute(f"SET {_name(name)} = '{self._held[name]}'")
                else:
                    self.con.execute(f"RESET {_name(name)}")

    # -- plugin migrations ---------------------------------------------------------------------
    def migrate_plugin(self, owner: str, statements: Sequence[str]) -> int:
        """Run the plugin's migrations this store has not run yet, in order, each once (recorded by
        owner and position in ``plugin_migrations``); returns how many ran."""
        if self.read_only:
            return 0
        done = self.scalar("SELECT count(*) FROM plugin_migrations WHERE owner = ?", [owner])
        for version, sql in enumerate(statements, start=1):
            if version <= done:
                continue
            try:
                with self.transaction():
                    self.con.execute(sql)
                    self.con.execute("INSERT INTO plugin_migrations VALUES (?, ?, ?)", [owner, version, now()])
            except duckdb.Error as exc:
                raise StoreError(f"migration {version} of plugin '{owner}' failed: {str(exc).splitlines()[0]}") from None
        return max(len(statements) - done, 0)

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
        """Store completions (key, text, prompt_tokens, completion_tokens, finish_reason) in one insert."""
        if not rows:
            return
        unique = list({r[0]: r for r in rows}.values())
        table = _arrow(dict(zip(CACHE_COLUMNS, zip(*unique))), CACHE_COLUMNS)
        with self._registered("_cache_batch", table):
            self.con.execute("INSERT INTO llm_cache SELECT * FROM _cache_batch ON CONFLICT (key) DO NOTHING")


# Columns written in bulk, with the Arrow type of each ("json": encoded here, stored as JSON).
GENERATION_COLUMNS = {
    "key": "string", "task": "string", "input_id": "string", "status": "string", "output": "json",
    "raw_output": "json", "prompt": "json", "error": "string", "template": "string",
    "template_version": "string", "options": "json", "model": "string", "sampling": "json", "seed": "int64",
    "prompt_tokens": "int32", "completion_tokens": "int32", "seconds": "float64", "run_id": "string",
    "created_at": "timestamp", "item_data": "json", "prompt_hash": "string",
}
# What a retried failure's new row replaces (key, task, template, options and model are the same by the key).
REPLACED_ON_RETRY = ("status", "output", "raw_output", "prompt", "error", "prompt_tokens", "completion_tokens",
                     "seconds", "run_id", "item_data", "prompt_hash")
PERSONA_COLUMNS = {
    "id": "string", "persona": "string", "origin": "string", "source_id": "string", "parent_id": "string",
    "hop": "int32", "relation": "string", "perspective": "string", "note": "string", "task": "string",
    "model": "string", "generation_key": "string", "run_id": "string",
}
# The methods plugins use (docs/plugins/store-api.md); a test checks each is documented and tested.
PLUGIN_API = ("persona_count", "document_count", "select_documents", "select_personas", "stream_personas",
              "add_personas", "mark_personas", "forget_method", "marked_count", "read", "append", "delete", "tuned")
DOCUMENT_COLUMNS = ("id", "seq", "content_hash", "text", "source_file", "source_id", "ingested_at")
MARK_COLUMNS = {"persona_id": "string", "cluster_id": "string", "duplicate_of": "string", "similarity": "float64",
                "reason": "string"}
# A persona some dedup method marked: left out of later selections unless asked for.
MARKED = "EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"
PERSONA_FILTER = {"unchecked_by": None, "checked_by": None, "where": None, "limit": None, "ids": None,
                  "include_marked": False}
CACHE_COLUMNS = {"key": "string", "text": "string", "prompt_tokens": "int32", "completion_tokens": "int32",
                 "finish_reason": "string"}


def _arrow(columns: dict[str, list], types: dict[str, str]):
    import pyarrow as pa

    kinds = {"string": pa.string(), "json": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
             "float64": pa.float64(), "timestamp": pa.timestamp("us")}
    return pa.table({name: pa.array(list(values), type=kinds[types[name]]) for name, values in columns.items()})


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def open_store(path: str | os.PathLike, read_only: bool = False) -> Store:
    return Store(path, read_only=read_only)


def _name(identifier: str) -> str:
    """A table, column or setting name a plugin gives; refused unless it is a plain identifier."""
    if not identifier.replace("_", "a").isalnum() or identifier[:1].isdigit():
        raise ValueError(f"not a plain SQL name: {identifier!r}")
    return identifier


def _strings(ids):
    """Ids as an Arrow string array (as given, when they are one already)."""
    import pyarrow as pa

    return ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())


def _table(**columns):
    import pyarrow as pa

    return pa.table(columns)


@contextmanager
def _nothing() -> Iterator[None]:
    yield
