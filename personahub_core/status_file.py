"""How far a run has got, readable while it holds the store: DuckDB lets one process open the file
while another writes it, so the writer keeps ``<store>.status.json`` beside it (written whole at every
flush, replaced atomically) and ``runs``, ``stats`` and the store-locked error read that instead.
A file whose process is gone (killed, crashed) is ignored.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from .run_stats import RunStats


def status_path(db: str | os.PathLike) -> Path:
    db = Path(db)
    return db.with_name(db.name + ".status.json")


class StatusFile:
    """The writing run's side of the file: counts, total, rate and ETA, at every flush."""

    def __init__(self, db: str | os.PathLike, run_id: str, task: str):
        self.path = status_path(db)
        self.run_id, self.task = run_id, task
        self.total = 0
        self.started = time.monotonic()
        self.started_at = _now()

    def expect(self, items: int | None) -> None:
        """More work items are on their way (a multi-stage task adds each stage's as it starts)."""
        self.total += items or 0

    def write(self, s: RunStats) -> None:
        done, failed = s.items_done, s.items_failed + s.items_rejected
        seconds = time.monotonic() - self.started
        rate = (done + failed) / seconds if seconds > 0 else 0.0
        left = max(self.total - done - failed, 0)
        status = {"run_id": self.run_id, "task": self.task, "pid": os.getpid(), "items_done": done,
                  "items_failed": failed, "items_total": self.total, "items_per_second": round(rate, 3),
                  "eta_seconds": round(left / rate) if rate > 0 else None, "started_at": self.started_at,
                  "updated_at": _now()}
        partial = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        try:
            partial.write_text(json.dumps(status), encoding="utf-8")
            os.replace(partial, self.path)  # readers see the old file or the new one, never half of one
        except OSError:  # a full disk must not stop the run: the file is a view, the store is the record
            partial.unlink(missing_ok=True)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def live_status(db: str | os.PathLike) -> dict | None:
    """The status of the run writing this store, or None (no file, an unreadable one, or its process gone)."""
    try:
        status = json.loads(status_path(db).read_text(encoding="utf-8"))
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if _alive(pid) else None


def describe(status: dict) -> str:
    """'a run is writing: N of M done, ETA ...' for one status."""
    done, failed, total = status["items_done"], status["items_failed"], status["items_total"]
    counts = f"{done:,} of {total:,} done" if total else f"{done:,} done so far"
    eta = status.get("eta_seconds")
    when = f", ETA {_duration(eta)}" if eta is not None and total else ""
    return (f"a run is writing: {counts}{f', {failed:,} failed' if failed else ''}{when} "
            f"(task {status['task']}, run {status['run_id']}, pid {status['pid']}, updated {status['updated_at']})")


def as_run(status: dict) -> dict:
    """The status as a row of ``personahub runs``."""
    return {"id": status["run_id"], "task": status["task"], "status": "running", "items_done": status["items_done"],
            "items_failed": status["items_failed"], "items_total": status["items_total"],
            "eta_seconds": status.get("eta_seconds"), "started_at": status["started_at"],
            "updated_at": status["updated_at"], "pid": status["pid"]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
