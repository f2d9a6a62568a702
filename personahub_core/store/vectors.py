"""Persona embeddings: the vectors embedding dedup, ``personas search`` and the diversity study use
(dim little-endian float32, L2-normalised, one row per persona and model). The sqlite-vec index beside
the store is derived from these (``vector_search.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .connection import _nothing, _table
from .personas import KEPT

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

VECTOR_COLUMNS = ("seq", "id", "dim", "vector")


class Vectors:
    def personas_without_vectors(self, model: str, *, ids: pa.Array | None = None,
                                 inputs_of: Sequence[str] | None = None) -> pa.Table:
        """Kept personas (id, persona) with no ``model`` vector yet, in creation order: among ``ids`` if
        given, and only those some finished row of the tasks ``inputs_of`` was made from, if given."""
        conditions, params = [KEPT], [model]
        if ids is not None:
            conditions.append("p.id IN (SELECT id FROM _embed_ids)")
        if inputs_of is not None:
            conditions.append("p.id IN (SELECT input_id FROM generations WHERE status = 'ok' "
                              "AND list_contains(?::VARCHAR[], task))")
            params.insert(0, list(inputs_of))
        with self._registered("_embed_ids", _table(id=ids)) if ids is not None else _nothing():
            return self.con.sql(
                f"SELECT p.id, p.persona FROM personas p WHERE {' AND '.join(conditions)} AND NOT EXISTS "
                f"(SELECT 1 FROM embeddings e WHERE e.persona_id = p.id AND e.model = ?) ORDER BY p.seq",
                params=params).to_arrow_table()

    def add_persona_vectors(self, model: str, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store the personas' ``model`` vectors (one row of ``vectors`` per id) in one insert."""
        import numpy as np
        import pyarrow as pa

        dim = vectors.shape[1]
        blobs = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 * dim), len(ids),
                                                     [None, pa.py_buffer(np.ascontiguousarray(vectors, "<f4").tobytes())])
        with self._registered("_embeddings", _table(persona_id=pa.array(ids, pa.string()), vector=blobs)):
            self.con.execute("INSERT INTO embeddings (persona_id, model, dim, vector) "
                             "SELECT persona_id, ?, ?, vector::BLOB FROM _embeddings", [model, dim])

    def persona_vectors(self, model: str, *, seqs: Sequence[int] | None = None,
                        columns: Sequence[str] = VECTOR_COLUMNS) -> pa.Table:
        """The kept personas' ``model`` vectors (only those of ``seqs`` if given) in creation order:
        columns among seq, id, dim and vector (the float32 blob)."""
        unknown = [c for c in columns if c not in VECTOR_COLUMNS]
        if unknown:
            raise ValueError(f"persona vectors have no column {unknown[0]!r}")
        names = ", ".join(f"e.{c}" if c in ("dim", "vector") else f"p.{c}" for c in columns)
        only = "" if seqs is None else "AND p.seq IN (SELECT unnest(?))"
        params = [model] if seqs is None else [model, list(seqs)]
        return self.con.sql(
            f"SELECT {names} FROM personas p JOIN embeddings e ON e.persona_id = p.id "
            f"WHERE e.model = ? AND {KEPT} {only} ORDER BY p.seq", params=params).to_arrow_table()
