"""Runs: each task run's record (settings, options, counts kept current as it goes, notes), and runs
whose process is gone shown, and marked, as died."""

from __future__ import annotations

import json
import os
import socket

from .connection import now

# Runs started by this process and not yet finished: any other run marked 'running' has lost its process.
_LIVE_RUNS: set[str] = set()


class Runs:
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

    def run_speed(self, backend: str, model: str, task: str | None = None) -> tuple[int | None, float | None, int]:
        """Completion tokens, seconds and how many runs, over the finished runs with this backend and
        model that made some tokens (of ``task`` only, if given)."""
        where = ("status = 'done' AND completion_tokens > 0 AND seconds > 0 "
                 "AND settings->>'backend' = ? AND coalesce(settings->>'model', '') = ?")
        params = [backend, model]
        if task is not None:
            where, params = f"{where} AND task = ?", [*params, task]
        return self.query(f"SELECT sum(completion_tokens), sum(seconds), count(*) FROM runs WHERE {where}", params)[0]
