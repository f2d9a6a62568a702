"""Plugins' own tables (made by their migrations, see the register_migrations hook): read, appended to
and deleted from in whole sets, filtered by structured values, never by SQL text from a plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from .connection import _name, _nothing, _strings, _table
from .personas import PERSONA_FILTER

if TYPE_CHECKING:
    import pyarrow as pa


def _equal(equals: dict[str, Any] | None) -> tuple[list[str], list]:
    """``{"model": "m"}`` as conditions ``t.model = ?`` and their values (None: ``IS NULL``)."""
    conditions, values = [], []
    for column, value in (equals or {}).items():
        if value is None:
            conditions.append(f"t.{_name(column)} IS NULL")
        else:
            conditions.append(f"t.{_name(column)} = ?")
            values.append(value)
    return conditions or ["TRUE"], values


class PluginTables:
    def read(self, table: str, columns: Sequence[str], *, equals: dict[str, Any] | None = None,
             of_personas: dict | None = None, batch_rows: int | None = None) -> pa.Table | pa.RecordBatchReader:
        """Rows of a plugin's table as Arrow (a reader of ``batch_rows`` batches, if given), those whose
        columns have the values in ``equals`` if given. With ``of_personas`` (the filters of
        ``select_personas``: e.g. ``{"checked_by": "minhash"}``) only the rows whose ``persona_id`` is
        such a persona, in the personas' creation order."""
        names = ", ".join(f"t.{_name(c)}" for c in columns)
        conditions, values = _equal(equals)
        where = " AND ".join(conditions)
        sql = f"SELECT {names} FROM {_name(table)} t WHERE {where}"
        if of_personas is not None:
            inner, inner_params, wanted = self._persona_sql(**{**PERSONA_FILTER, **of_personas, "columns": ("id", "seq")})
            if wanted is not None:
                raise ValueError("read(of_personas=...) takes filters, not ids")
            sql = (f"SELECT {names} FROM {_name(table)} t JOIN ({inner}) p ON p.id = t.persona_id "
                   f"WHERE {where} ORDER BY p.seq")
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

    def delete(self, table: str, *, equals: dict[str, Any] | None = None,
               persona_ids: Sequence[str] | pa.Array | None = None, unchecked_by: str | None = None) -> None:
        """Delete rows of a plugin's table: those whose columns have the values in ``equals`` (every
        row, if not given), and of them only those of ``persona_ids`` if given, and only those of
        personas ``unchecked_by`` has not checked if given."""
        conditions, values = _equal(equals)
        if persona_ids is not None:
            conditions.append("t.persona_id IN (SELECT id FROM _delete_ids)")
        if unchecked_by is not None:
            conditions.append("NOT EXISTS (SELECT 1 FROM dedup_checked c WHERE c.persona_id = t.persona_id "
                              "AND c.method = ?)")
            values.append(unchecked_by)
        ids = None if persona_ids is None else _table(id=_strings(persona_ids))
        with self._registered("_delete_ids", ids) if ids is not None else _nothing():
            self.con.execute(f"DELETE FROM {_name(table)} t WHERE {' AND '.join(conditions)}", values)
