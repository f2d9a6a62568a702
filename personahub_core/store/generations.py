"""Generations (one row per unit of work, keyed so a resumed run only adds what is missing) and the
completion cache (a model's answer to a prompt, kept so asking again costs nothing)."""

from __future__ import annotations

from .connection import _arrow, _json, now

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
# Keys per query of an index lookup: DuckDB scans the index for a list of constants, while longer lists
# cost more to bind than they save (measured: 256 keys 9 ms, 2048 keys 59 ms, at 10^6 rows).
INDEX_LOOKUP = 256
CACHE_COLUMNS = {"key": "string", "text": "string", "prompt_tokens": "int32", "completion_tokens": "int32",
                 "finish_reason": "string"}


class Generations:
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
        with self.transaction(incoming=len(rows) + len(personas)):
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

    # -- cache ---------------------------------------------------------------------------------
    def cache_get(self, keys: list[str]) -> dict[str, tuple]:
        """The cached completions of ``keys``. Looked up through the key index, a few hundred keys a query:
        a join would scan the whole cache each time (46 ms per 256 keys at 10^6 rows, against 9)."""
        found = {}
        for start in range(0, len(keys), INDEX_LOOKUP):
            chunk = keys[start:start + INDEX_LOOKUP]
            rows = self.con.execute(
                "SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM llm_cache "
                f"WHERE key IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            found.update((r[0], r[1:]) for r in rows)
        return found

    def cache_put(self, rows: list[tuple]) -> None:
        """Store completions (key, text, prompt_tokens, completion_tokens, finish_reason) in one insert."""
        if not rows:
            return
        unique = list({r[0]: r for r in rows}.values())
        self.make_room(len(unique))
        table = _arrow(dict(zip(CACHE_COLUMNS, zip(*unique))), CACHE_COLUMNS)
        with self._registered("_cache_batch", table):
            self.con.execute("INSERT INTO llm_cache SELECT * FROM _cache_batch ON CONFLICT (key) DO NOTHING")

    def finished_tasks(self) -> list[str]:
        """The tasks with finished (``ok``) rows, by name."""
        return [r[0] for r in self.query("SELECT DISTINCT task FROM generations WHERE status = 'ok' ORDER BY 1")]

    def finished_rows(self, task: str, after: str = "", limit: int = 10_000) -> list[dict]:
        """Up to ``limit`` finished rows of ``task`` with a key after ``after``, in key order: ``key``, the
        ``persona`` it was made for, its ``text`` and its ``output`` (JSON text)."""
        return self.query_dicts(
            "SELECT g.key, p.persona, json_extract_string(g.output, '$.\"synthesized text\"') AS text, "
            "g.output FROM generations g LEFT JOIN personas p ON p.id = g.input_id "
            "WHERE g.task = ? AND g.status = 'ok' AND g.key > ? ORDER BY g.key LIMIT ?", [task, after, limit])

    def generation_statuses(self, keys: list[str]) -> dict[str, str]:
        """The status of each of ``keys`` that is stored."""
        if not keys:
            return {}
        return dict(self.query("SELECT key, status FROM generations WHERE key IN (SELECT unnest(?))", [keys]))

    def mean_completion_tokens(self, task: str) -> tuple[float | None, int]:
        """The mean completion tokens of ``task``'s rows that counted some, and how many rows that is."""
        return self.query("SELECT avg(completion_tokens), count(*) FROM generations WHERE task = ? "
                          "AND completion_tokens > 0", [task])[0]

    def prompt_token_samples(self, task: str, model: str, limit: int) -> list[tuple] | None:
        """Up to ``limit`` of ``task``'s one-call rows with ``model`` that counted prompt tokens: (key,
        input_id, the item's input as JSON text, prompt_tokens). None when the store keeps no item inputs
        (made before they were kept, opened read-only so not migrated)."""
        columns = {r[0] for r in self.query("SELECT column_name FROM information_schema.columns "
                                            "WHERE table_name = 'generations'")}
        if "item_data" not in columns:
            return None
        return self.query(
            "SELECT key, input_id, item_data->'input', prompt_tokens FROM generations WHERE task = ? AND model = ? "
            "AND prompt_tokens > 0 AND json_array_length(raw_output) = 1 AND item_data IS NOT NULL "
            "ORDER BY hash(key) LIMIT ?", [task, model, limit])
