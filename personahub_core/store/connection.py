"""The store's connection: opening a file safely (ours, not in use, writable), transactions, the
errors every room raises, DuckDB settings, and the small helpers the rooms share."""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from ..errors import PersonaHubError


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
        from ..status_file import describe

        self.status = status
        super().__init__(f"store {path} is in use by another run (DuckDB lock held)"
                         + (f"; {describe(status)}" if status else ""))


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)



# An automatic memory cap: room for cached table blocks, plus the primary-key indexes of the tables that
# grow with the work (DuckDB 2.0's ART took 68 bytes per 24-character key: measured at 10^6 to 3x10^6 keys).
BLOCK_ROOM = 64 * 2**20
INDEX_BYTES_PER_ROW = 80
KEYED_TABLES = ("generations", "llm_cache", "personas", "dedup_marks")
CAP_STEP = 16 * 2**20  # raised in steps, not at every write


class Connection:
    """Opening one DuckDB file (refusing what is not ours), closing it, transactions and settings."""

    def __init__(self, path: str | os.PathLike, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._held: dict[str, str] = {}  # DuckDB settings a run chose, which tuned blocks return to
        self._auto_cap: int | None = None  # bytes set, while the cap follows the keyed tables (limit_memory(None))
        self._check_path()
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                from ..status_file import live_status

                raise StoreLocked(self.path, live_status(self.path)) from None
            raise StoreError(f"cannot open store {self.path}: {msg.splitlines()[0]}") from None
        except duckdb.Error as exc:
            raise StoreError(f"{self.path} is not a PersonaHub store: {str(exc).splitlines()[0]}") from None
        # DuckDB's own progress bar would write to stdout, where --json summaries go.
        self.con.execute("SET enable_progress_bar = false")
        self._check_ours()
        if not read_only:
            self._migrate()  # see migrations.Migrations

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

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self, incoming: int = 0, room: int = BLOCK_ROOM) -> Iterator[None]:
        """One transaction; ``incoming`` is how many keyed rows it may add and ``room`` the bytes it works
        in (for the automatic cap)."""
        self.make_room(incoming, room)
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
        """Cap DuckDB's memory for the rest of this connection: at ``limit``, or (None) at what the keyed
        tables' indexes need plus room for cached blocks (``make_room``). Uncapped, DuckDB keeps table
        blocks cached up to 80% of RAM, so a long run's peak would grow with the store."""
        if limit is None:
            self._auto_cap = 0
            self.make_room()
        else:
            self._auto_cap = None
            self._set_memory_limit(limit)

    def make_room(self, incoming: int = 0, room: int = BLOCK_ROOM) -> None:
        """Under an automatic cap, before a write of up to ``incoming`` keyed rows that works in ``room``
        bytes (at least BLOCK_ROOM): DuckDB holds a written table's primary-key index whole in memory and
        cannot evict it, so a fixed cap would fail the first insert into a big store. The cap grows with
        the keyed rows stored and coming (it never shrinks: a loaded index stays)."""
        if self._auto_cap is None:
            return
        rows = self.scalar("SELECT coalesce(sum(estimated_size), 0) FROM duckdb_tables() "
                           "WHERE database_name = current_database() AND table_name IN (SELECT unnest(?))",
                           [list(KEYED_TABLES)])
        # A transaction's new keys are indexed on their own, then merged into the table's index at commit.
        cap = max(room, BLOCK_ROOM) + INDEX_BYTES_PER_ROW * (rows + 2 * incoming)
        if cap > self._auto_cap + CAP_STEP:  # the first time too: the cap is at least BLOCK_ROOM
            self._auto_cap = cap
            self._set_memory_limit(f"{-(-cap // 2**20)}MiB")

    def _set_memory_limit(self, limit: str) -> None:
        self.con.execute(f"SET memory_limit = '{limit}'")  # the setting admits only sizes
        self._held["memory_limit"] = limit

    def scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self.con.execute(sql, list(params)).fetchall()  # fetch all: DuckDB 2 refuses new work on an unfinished result
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT count(*) FROM {table}")  # table names come from our code only

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

    @contextmanager
    def _registered(self, name: str, table) -> Iterator[None]:
        self.con.register(name, table)
        try:
            yield
        finally:
            self.con.unregister(name)


def _arrow(columns: dict[str, list], types: dict[str, str]):
    import pyarrow as pa

    kinds = {"string": pa.string(), "json": pa.string(), "int32": pa.int32(), "int64": pa.int64(),
             "float64": pa.float64(), "timestamp": pa.timestamp("us")}
    return pa.table({name: pa.array(list(values), type=kinds[types[name]]) for name, values in columns.items()})


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)



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

