"""Documents and personas: the one persona selection every command and task uses (creation order,
marked personas left out unless asked for, ``--where`` filters from ``where.py``), adding personas, and
the marks and checks of dedup methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

from .. import where as where_filter
from .connection import _arrow, _name, _nothing, _strings, _table

if TYPE_CHECKING:
    import pyarrow as pa

PERSONA_COLUMNS = {
    "id": "string", "persona": "string", "origin": "string", "source_id": "string", "parent_id": "string",
    "hop": "int32", "relation": "string", "perspective": "string", "note": "string", "task": "string",
    "model": "string", "generation_key": "string", "run_id": "string",
}
DOCUMENT_COLUMNS = ("id", "seq", "content_hash", "text", "source_file", "source_id", "ingested_at")
MARK_COLUMNS = {"persona_id": "string", "cluster_id": "string", "duplicate_of": "string", "similarity": "float64",
                "reason": "string"}
# A persona some dedup method marked: left out of later selections unless asked for.
MARKED = "EXISTS (SELECT 1 FROM dedup_marks m WHERE m.persona_id = p.id)"
PERSONA_FILTER = {"unchecked_by": None, "checked_by": None, "where": None, "limit": None, "ids": None,
                  "include_marked": False}
# The one "not marked as a duplicate" predicate, on a persona aliased ``p``.
KEPT = f"NOT {MARKED}"


class Personas:
    def persona_count(self) -> int:
        return self.count("personas")

    def document_count(self) -> int:
        return self.count("documents")

    def kept_count(self) -> int:
        """How many personas no dedup method marked."""
        return self.scalar(f"SELECT count(*) FROM personas p WHERE {KEPT}")

    def select_documents(self, columns: Sequence[str] = ("id", "text")) -> pa.Table:
        """The ingested documents as one Arrow table, in the order they were ingested."""
        unknown = [c for c in columns if c not in DOCUMENT_COLUMNS]
        if unknown:
            raise ValueError(f"documents have no column {unknown[0]!r}")
        return self.con.sql(f"SELECT {', '.join(columns)} FROM documents ORDER BY seq").to_arrow_table()

    def add_documents(self, documents: pa.Table) -> None:
        """Insert documents as they are (Arrow: id, content_hash, text, source_file), in one insert: a
        dry run's scratch store gets the real store's documents so."""
        with self._registered("_docs", documents):
            self.con.execute("INSERT INTO documents (id, content_hash, text, source_file) "
                             "SELECT id, content_hash, text, source_file FROM _docs")

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

    def _persona_conditions(self, unchecked_by, checked_by, where, include_marked) -> tuple[list[str], list]:
        """The WHERE conditions (on personas ``p``) and their values of one selection."""
        clause, params = where_filter.to_sql(where)
        conditions = [clause]
        if not include_marked:
            conditions.append(KEPT)
        for method, negate in ((unchecked_by, "NOT "), (checked_by, "")):
            if method is not None:
                conditions.append(f"{negate}EXISTS (SELECT 1 FROM dedup_checked c WHERE c.persona_id = p.id "
                                  f"AND c.method = ?)")
                params.append(method)
        return conditions, params

    def _persona_sql(self, unchecked_by, checked_by, where, limit, ids, include_marked, columns):
        unknown = [c for c in columns if c not in PERSONA_COLUMNS and c != "seq"]
        if unknown:
            raise ValueError(f"personas have no column {unknown[0]!r}")
        conditions, params = self._persona_conditions(unchecked_by, checked_by, where, include_marked)
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

    def persona_chunks(self, where=None, include_marked: bool = False, chunk: int = 10_000,
                       columns: Sequence[str] = ("id", "persona", "origin", "hop")) -> Iterator[list[dict]]:
        """The personas ``select_personas`` would give, as dicts, a chunk at a time, so a run over 10^6
        personas never holds them all.

        One ORDER BY over the whole table would sort every persona in memory before the first came out.
        Creation order is ``seq`` (a sequence, so it grows as rows are stored), so windows of ``chunk``
        seq values each read only their own row groups (DuckDB skips the others by their min/max) and
        sort only what they hold. Nothing is left open between chunks: the store stays free for other
        queries meanwhile."""
        conditions, params = self._persona_conditions(None, None, where, include_marked)
        names = ", ".join(f"p.{c}" for c in columns)
        first, last = self.query("SELECT min(seq), max(seq) FROM personas")[0]
        if first is None:
            return
        for start in range(first, last + 1, chunk):
            rows = self.query_dicts(
                f"SELECT {names} FROM personas p WHERE p.seq >= {start} AND p.seq < {start + chunk} "
                f"AND {' AND '.join(conditions)} ORDER BY p.seq", params)
            if rows:
                yield rows

    def add_personas(self, personas: pa.Table, limit: int | None = None, *, id_from: Sequence[str] = (),
                     id_prefix: str = "") -> tuple[int, int]:
        """Add the personas (Arrow; columns from ``personas`` in the store: id and persona and origin at
        least) whose id is not stored yet, the first row of an id winning, in table order, at most
        ``limit`` of them. Returns (how many were new, how many were added). With ``id_from`` (column
        names) the id is made here: ``id_prefix`` and the work key of those columns (nulls left out)."""
        import numpy as np
        import pyarrow as pa

        if id_from:
            personas = personas.append_column("id", self._work_keys(personas, id_from, id_prefix))
        names = [c for c in personas.column_names if c in PERSONA_COLUMNS]
        missing = {"id", "persona", "origin"} - set(names)
        if missing:
            raise ValueError(f"add_personas: the table has no column {sorted(missing)[0]!r}")
        rows = pa.table({c: personas.column(c) for c in names})
        numbered = rows.append_column("_n", pa.array(np.arange(rows.num_rows)))
        with self._registered("_new_personas", numbered), self.transaction(incoming=rows.num_rows):
            # Only row numbers go through DuckDB (a sort of wide rows cannot spill): the first row of
            # each id not stored yet, in table order.
            first = self.con.sql("SELECT min(_n) AS n FROM _new_personas n WHERE NOT EXISTS "
                                 "(SELECT 1 FROM personas p WHERE p.id = n.id) GROUP BY id").to_arrow_table()
            taken = np.sort(first.column("n").to_numpy())
            new = len(taken)
            if limit is not None:
                taken = taken[:max(int(limit), 0)]
            fresh = rows if len(taken) == rows.num_rows else rows.take(taken)  # all new: no copy
            columns = ", ".join(names)
            # A plain insert: each row is checked against the key index alone, not joined with the table.
            with self._registered("_fresh_personas", fresh):
                self.con.execute(f"INSERT INTO personas ({columns}) SELECT {columns} FROM _fresh_personas")
        return new, len(taken)

    def _work_keys(self, rows: pa.Table, parts: Sequence[str], prefix: str) -> pa.Array:
        """``tasks.work_key`` of each row's ``parts`` (its JSON list hashed), in DuckDB, for a whole table."""
        import numpy as np
        import pyarrow as pa

        encoded = ", ".join(f"to_json(k.{_name(c)})::VARCHAR" for c in parts)  # a null part is left out
        numbered = rows.append_column("_n", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        with self._registered("_keyed", numbered):
            return self.con.sql(f"SELECT ? || sha256('[' || concat_ws(', ', {encoded}) || ']')[:24] AS id "
                                f"FROM _keyed k ORDER BY _n", params=[prefix]).to_arrow_table().column("id")

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
            with self.transaction(incoming=marks.num_rows):
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

