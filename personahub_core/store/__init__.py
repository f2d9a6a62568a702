"""The DuckDB store: the system of record for documents, personas, dedup marks, generations and runs.

Nothing is deleted by a stage: dedup marks, failures keep their raw output and error. Every unit of work
has a deterministic key, so a resumed run only adds what is missing. One ``Store`` is built from rooms,
each a file of this package (docs/architecture.md): the connection, migrations, runs, generations and
the cache, personas, documents in, persona vectors, plugins' tables, the figures commands show, the
rows exports write, and the ``PluginStore`` tasks see.
"""

from __future__ import annotations

from .connection import Connection, NotAStore, StoreError, StoreLocked, disk_full, is_duckdb_file
from .documents import Documents
from .exports import ExportQuery, Exports
from .generations import REPLACED_ON_RETRY, Generations
from .migrations import MIGRATIONS, Migrations
from .personas import KEPT, MARKED, Personas
from .plugin_api import PLUGIN_API, PluginStore
from .plugin_tables import PluginTables
from .runs import Runs
from .summaries import OUTPUT_TEXT, Summaries
from .vectors import Vectors

__all__ = ["KEPT", "MARKED", "MIGRATIONS", "OUTPUT_TEXT", "PLUGIN_API", "REPLACED_ON_RETRY", "ExportQuery",
           "NotAStore", "PluginStore", "Store", "StoreError", "StoreLocked", "disk_full", "is_duckdb_file"]


class Store(Connection, Migrations, Runs, Generations, Personas, Vectors, PluginTables, Summaries, Exports,
            Documents):
    """One open DuckDB file. DuckDB allows a single writing process, which is our run lock."""
