"""Parquet shards: the rows Ray actors write, and how the store takes them in.

Under ``--executor ray`` each actor turns its outcomes into rows with ``runner.outcome_records`` (the rows
the local Writer stores) and writes them as Parquet files, so the driver never holds a row:

    <root>/<run_id>/generations/part-<time>-<actor>-<n>.parquet
    <root>/<run_id>/personas/part-<the same name>.parquet      (when that part made personas)
    <root>/<run_id>/items/part-N.parquet                        (the work items, written by the driver)

``<root>`` is ``<db>.shards`` beside the store, or the ``ray_shards`` setting (a folder, or a URI that
both pyarrow and DuckDB can read, e.g. ``s3://bucket/run`` with DuckDB's httpfs).

The store takes shards in with ``INSERT ... SELECT FROM read_parquet(...)``, keyed as the Writer keys
its rows: a new key is inserted; a stored failure is replaced by another run's row of the same key
(attempts + 1, as a retried failure is); anything else stays. Merged files are deleted, so the files
present are exactly the work not yet merged: a run first merges whatever a killed run left, then
selects its work, and nothing is redone or written twice.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from .store import REPLACED_ON_RETRY, Store

TABLES = ("generations", "personas")
# Files taken in per transaction: bounds the driver's memory whatever the size of the run.
FILES_PER_MERGE = 4
ARROW_TYPES = {"VARCHAR": pa.string(), "JSON": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(),
               "DOUBLE": pa.float64(), "BOOLEAN": pa.bool_()}


def shard_root(db: Path, shards: str | None) -> str:
    """Where a run's shards go: ``shards`` (the ray executor's ``ray_shards``), else a folder beside the
    store ``db``. Local paths are made absolute, because actors do not share the driver's working folder."""
    root = shards or f"{db}.shards"
    return root if "://" in root else os.path.abspath(root)


@dataclass
class Tally:
    """What a set of outcomes counts for a run's summary."""

    done: int = 0
    rejected: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    personas: int = 0

    @property
    def items(self) -> int:
        return self.done + self.rejected + self.failed

    def count(self, status: str, prompt_tokens: int, completion_tokens: int, n: int = 1) -> None:
        field = {"ok": "done", "rejected": "rejected"}.get(status, "failed")
        setattr(self, field, getattr(self, field) + n)
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def __iadd__(self, other: "Tally") -> "Tally":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


# -- writing (in the actors)


@dataclass
class ShardSpec:
    """What an actor needs to write a run's shards: where, and the store's column types."""

    root: str
    run_id: str
    columns: dict[str, dict[str, str]]  # table -> column -> DuckDB type

    @classmethod
    def for_run(cls, store: Store, root: str, run_id: str) -> "ShardSpec":
        return cls(root, run_id, {t: dict(store.query(f"SELECT column_name, column_type FROM (DESCRIBE {t})"))
                                  for t in TABLES})


class ShardWriter:
    """Writes parts of one run's rows. A part's persona file is written before its generation file, and
    each file appears under its final name only when complete, so no generation row is ever on disk
    without its personas, and a reader never sees half a file."""

    def __init__(self, spec: ShardSpec):
        self.spec = spec
        self.fs, base = pafs.FileSystem.from_uri(spec.root)
        self.folder = f"{base}/{spec.run_id}"
        self.writer_id = uuid.uuid4().hex[:8]
        self.parts = 0

    def write(self, rows: list[dict], personas: list[dict]) -> None:
        if not rows:
            return
        self.parts += 1
        name = f"part-{time.time_ns()}-{self.writer_id}-{self.parts:05d}.parquet"
        if personas:
            self._write("personas", personas, name)
        self._write("generations", rows, name)

    def _write(self, table: str, rows: list[dict], name: str) -> None:
        types = {c: t for c, t in self.spec.columns[table].items() if c in rows[0]}
        arrays = {c: pa.array([_encode(r.get(c), t) for r in rows], type=ARROW_TYPES.get(t)) for c, t in types.items()}
        folder = f"{self.folder}/{table}"
        self.fs.create_dir(folder, recursive=True)
        pq.write_table(pa.table(arrays), f"{folder}/{name}.tmp", filesystem=self.fs)
        self.fs.move(f"{folder}/{name}.tmp", f"{folder}/{name}")


def write_items(spec: ShardSpec, tables: Iterable[pa.Table], rows_per_file: int) -> list[tuple[str, int]]:
    """A run's work items as Parquet files in its folder (``<run>/items/part-N.parquet``), written as the
    tables come, so the driver holds one file's rows at most; the actors read them from there, as they
    write their shards there. Returns each file's path and row count. The files go with the run's
    folder once its shards are merged."""
    fs, base = pafs.FileSystem.from_uri(spec.root)
    folder = f"{base}/{spec.run_id}/items"
    files: list[tuple[str, int]] = []
    buffered: list[pa.Table] = []

    def write() -> None:
        table = pa.concat_tables(buffered)
        buffered.clear()
        if not files:
            fs.create_dir(folder, recursive=True)
        files.append((f"{folder}/part-{len(files) + 1:06d}.parquet", table.num_rows))
        pq.write_table(table, files[-1][0], filesystem=fs)

    for table in tables:
        buffered.append(table)
        if sum(t.num_rows for t in buffered) >= rows_per_file:
            write()
    if buffered:
        write()
    return files


def read_items(fs: pafs.FileSystem, path: str, start: int, count: int) -> pa.Table:
    return pq.read_table(path, filesystem=fs).slice(start, count)


def _encode(value: Any, column_type: str) -> Any:
    if column_type == "JSON" and value is not None:
        return json.dumps(value, ensure_ascii=False, default=str)  # as Store.write_generations encodes it
    return value


# -- merging (in the driver)


def merge_shards(store: Store, root: str, run_id: str | None = None, writing: bool = False) -> dict[str, Tally]:
    """Take in the shards under ``root`` and delete the files merged; return what each run added.

    Without ``run_id``, every run's shards: runs that are over, since this process holds the store.
    With it, that run's only. While its actors may still be ``writing``, no folder is removed.
    """
    fs, base = pafs.FileSystem.from_uri(root)
    added: dict[str, Tally] = {}
    runs = [run_id] if run_id else [i.base_name for i in _listing(fs, base) if i.type == pafs.FileType.Directory]
    for run in sorted(runs):
        parts, with_personas = _parts(fs, f"{base}/{run}")
        tally = added.setdefault(run, Tally())
        folder = f"{root.rstrip('/')}/{run}"
        for start in range(0, len(parts), FILES_PER_MERGE):
            chunk = parts[start : start + FILES_PER_MERGE]
            tally += _merge(store, [f"{folder}/generations/{n}" for n in chunk],
                            [f"{folder}/personas/{n}" for n in chunk if n in with_personas])
            for name in chunk:  # only after the commit: a file merged twice adds nothing the second time
                fs.delete_file(f"{base}/{run}/generations/{name}")
                if name in with_personas:
                    fs.delete_file(f"{base}/{run}/personas/{name}")
        if not writing:
            # What is left is a persona file whose generation file was never written (the actor was
            # killed between the two): its item was not done, so it goes with the folder.
            left = [Path(i.path).parent.name for i in _listing(fs, f"{base}/{run}", recursive=True)
                    if i.type == pafs.FileType.File]
            if "generations" not in left:
                fs.delete_dir(f"{base}/{run}")
    if not writing and fs.get_file_info(base).type == pafs.FileType.Directory and not _listing(fs, base):
        fs.delete_dir(base)
    return added


def _listing(fs: pafs.FileSystem, folder: str, recursive: bool = False) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(folder, recursive=recursive, allow_not_found=True))


def _parts(fs: pafs.FileSystem, folder: str) -> tuple[list[str], set[str]]:
    """A run's generation part names in write order, and the names that have a persona file. The
    generation files are listed first: a persona file is written before its generation file, so every
    persona file of a listed part is there by the time its folder is listed."""
    parts = sorted(Path(i.path).name for i in _listing(fs, f"{folder}/generations") if i.path.endswith(".parquet"))
    with_personas = {Path(i.path).name for i in _listing(fs, f"{folder}/personas") if i.path.endswith(".parquet")}
    return parts, with_personas


def _merge(store: Store, generation_files: list[str], persona_files: list[str]) -> Tally:
    """One transaction: the generation rows whose key is new, or whose stored row failed in another run
    (replaced, attempts + 1); then the personas of the rows that went in as done."""
    tally = Tally()
    source = _read(generation_files, file_row_number=True)
    shard_columns = [r[0] for r in store.query(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {source})")]
    table_columns = [r[0] for r in store.query("SELECT column_name FROM (DESCRIBE generations)")]
    columns = [c for c in shard_columns if c in table_columns]
    names = ", ".join(columns)
    # Under the automatic memory cap: room for the rows twice over (read, then held as ``incoming``).
    rows, size = store.query("SELECT sum(row_group_num_rows) FILTER (WHERE column_id = 0), "
                             f"sum(total_uncompressed_size) FROM parquet_metadata({_listed(generation_files)})")[0]
    with store.transaction(incoming=rows, room=2 * size):
        # A key written twice (a retried actor task) is taken once, its done row first: chosen by row
        # position alone, so the wide rows are streamed, never sorted. The stored rows are narrowed to
        # the incoming keys before the join: joined whole, DuckDB would hash the whole table, and the
        # driver's memory would grow with the store.
        store.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE incoming AS
            SELECT {", ".join(f"s.{c}" for c in columns)}, g.key IS NOT NULL AS replaces
            FROM {source} s
            SEMI JOIN (SELECT filename, file_row_number FROM {source}
                       QUALIFY row_number() OVER (PARTITION BY key ORDER BY status = 'ok' DESC, filename DESC) = 1) w
                   ON w.filename = s.filename AND w.file_row_number = s.file_row_number
            LEFT JOIN (SELECT key, status, run_id FROM generations WHERE key IN (SELECT key FROM {source})) g
                   ON g.key = s.key
            WHERE g.key IS NULL OR (g.status <> 'ok' AND g.run_id IS DISTINCT FROM s.run_id)
            """
        )
        updates = ", ".join(f"{c} = i.{c}" for c in REPLACED_ON_RETRY if c in columns)
        store.con.execute(f"UPDATE generations SET {updates}, attempts = generations.attempts + 1 "
                          "FROM incoming i WHERE generations.key = i.key AND i.replaces")
        store.con.execute(f"INSERT INTO generations ({names}) SELECT {names} FROM incoming WHERE NOT replaces")
        for status, n, prompt_tokens, completion_tokens in store.query(
                "SELECT status, count(*), sum(prompt_tokens), sum(completion_tokens) FROM incoming GROUP BY status"):
            tally.count(status, prompt_tokens, completion_tokens, n)
        if persona_files:
            tally.personas = _merge_personas(store, persona_files)
        store.con.execute("DROP TABLE incoming")
    return tally


def _merge_personas(store: Store, files: list[str]) -> int:
    source = _read(files, file_row_number=True)
    shard_columns = [r[0] for r in store.query(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {source})")]
    table_columns = [r[0] for r in store.query("SELECT column_name FROM (DESCRIBE personas)")]
    columns = [c for c in shard_columns if c in table_columns]
    before = store.count("personas")
    # Personas go in in the order they were made (their seq decides which of a duplicate cluster is kept).
    store.con.execute(
        f"""
        INSERT INTO personas ({", ".join(columns)})
        SELECT {", ".join(f"s.{c}" for c in columns)} FROM {source} s
        LEFT JOIN (SELECT id FROM personas WHERE id IN (SELECT id FROM {source})) p ON p.id = s.id
        WHERE s.generation_key IN (SELECT key FROM incoming WHERE status = 'ok') AND p.id IS NULL
        QUALIFY row_number() OVER (PARTITION BY s.id ORDER BY filename, file_row_number) = 1
        ORDER BY filename, file_row_number
        """
    )
    return store.count("personas") - before


def _read(files: list[str], file_row_number: bool = False) -> str:
    extra = ", file_row_number = true" if file_row_number else ""
    return f"read_parquet({_listed(files)}, union_by_name = true, filename = true{extra})"


def _listed(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
