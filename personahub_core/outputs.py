"""Files a command writes (``--out``): never onto the store or any DuckDB file, never half written.

A file is written under a temporary name beside its target and renamed onto it when whole; the temporary
file goes on any failure, and one left by a killed run is removed by the next write of that path.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from .errors import PersonaHubError, UsageError
from .store import disk_full, is_duckdb_file


def check_out(out_path: Path, store_path: Path) -> None:
    """Refuse an ``--out`` that is the store (by any name: relative, through a symlink, a hard link), its
    write-ahead log, or another DuckDB database."""
    out, store = Path(out_path), Path(store_path)
    ours = (store, store.with_name(store.name + ".wal"))
    if any(out.resolve() == p.resolve() or (out.exists() and p.exists() and os.path.samefile(out, p)) for p in ours):
        raise UsageError(f"--out {out}: that is the store {store}; choose another file")
    if out.is_file() and is_duckdb_file(out):
        raise UsageError(f"--out {out}: is a DuckDB database; refusing to overwrite it")


@contextmanager
def written(out_path: Path) -> Iterator[Path]:
    """The temporary path to write ``out_path`` to; renamed onto it when the block ends well."""
    tmp = out_path.with_name(f".{out_path.name}.partial")
    tmp.unlink(missing_ok=True)  # a killed run's leftover
    try:
        yield tmp
        os.replace(tmp, out_path)
    except (OSError, duckdb.Error) as exc:
        if disk_full(exc):
            raise PersonaHubError(f"--out {out_path}: no space left on device") from None
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise PersonaHubError(f"--out {out_path}: cannot write: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; after a failure, no half file is left
