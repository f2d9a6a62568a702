"""The store's schema, made by migrations run once each in order (recorded in ``schema_migrations``),
and plugins' own tables, made by the migrations they register (recorded in ``plugin_migrations``)."""

from __future__ import annotations

from typing import Sequence

import duckdb

from .connection import StoreError, now


MIGRATIONS: list[str] = []
migration = MIGRATIONS.append

migration(
    """
    CREATE SEQUENCE doc_seq;
    -- No key constraints: DuckDB's indexes make bulk appends slow; ingest keeps id and hash unique itself.
    CREATE TABLE documents (
        id VARCHAR NOT NULL,              -- original id when the corpus has one, else the content hash
        seq BIGINT DEFAULT nextval('doc_seq'),
        content_hash VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        source_file VARCHAR,
        ingested_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE SEQUENCE persona_seq;
    CREATE TABLE personas (
        id VARCHAR PRIMARY KEY,
        seq BIGINT DEFAULT nextval('persona_seq'),  -- creation order: the earliest of a duplicate cluster is kept
        persona VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,          -- text | expansion | import
        source_id VARCHAR,                -- document the persona came from
        parent_id VARCHAR,                -- persona it was expanded from
        hop INTEGER DEFAULT 0,
        relation VARCHAR,
        perspective VARCHAR,
        note VARCHAR,                     -- provenance detail, e.g. "source text truncated"
        task VARCHAR,
        model VARCHAR,
        generation_key VARCHAR,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE dedup_marks (
        persona_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- minhash | embedding | quality | ...
        cluster_id VARCHAR,
        duplicate_of VARCHAR,
        similarity DOUBLE,
        reason VARCHAR,
        run_id VARCHAR,
        marked_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (persona_id, method)
    );
    CREATE TABLE generations (
        key VARCHAR PRIMARY KEY,          -- deterministic per unit of work
        task VARCHAR NOT NULL,
        input_id VARCHAR,                 -- persona or document id
        status VARCHAR NOT NULL,          -- ok | rejected | failed
        output JSON,                      -- parsed result
        raw_output JSON,                  -- list of raw completions, one per step
        prompt JSON,                      -- list of prompts, one per step
        error VARCHAR,
        template VARCHAR,
        template_version VARCHAR,
        options JSON,
        model VARCHAR,
        sampling JSON,
        seed BIGINT,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        seconds DOUBLE,
        attempts INTEGER DEFAULT 1,
        run_id VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE runs (
        id VARCHAR PRIMARY KEY,
        task VARCHAR NOT NULL,
        status VARCHAR NOT NULL,          -- running | done | interrupted | failed
        settings JSON,
        options JSON,
        items_done INTEGER DEFAULT 0,
        items_failed INTEGER DEFAULT 0,
        completion_tokens BIGINT DEFAULT 0,
        seconds DOUBLE,
        started_at TIMESTAMP DEFAULT current_timestamp,
        finished_at TIMESTAMP
    );
    CREATE TABLE llm_cache (
        key VARCHAR PRIMARY KEY,          -- hash of model, prompt and sampling parameters
        text VARCHAR,
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        finish_reason VARCHAR
    );
    """
)

# Deduplication: which personas each method has checked (so runs are incremental) and persona
# embeddings (embedding dedup, search and the diversity study; the sqlite-vec index beside the store
# is rebuilt from these). No primary keys: rows are written in bulk by one writer that only adds what
# is missing, and keys would slow that down. (MinHash signatures were made here too: the minhash
# plugin's own migration makes that table now, the same, IF NOT EXISTS, so older stores keep theirs.)
migration(
    """
    CREATE TABLE dedup_checked (
        persona_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,          -- minhash | embedding | quality
        run_id VARCHAR
    );
    CREATE TABLE embeddings (
        persona_id VARCHAR NOT NULL,
        model VARCHAR NOT NULL,           -- backend:model that made the vector
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,             -- dim little-endian float32, L2-normalised
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    """
)

# The diversity study: vectors of synthesized outputs (personas' vectors are in ``embeddings``).
migration(
    """
    CREATE TABLE output_embeddings (
        generation_key VARCHAR NOT NULL,
        model VARCHAR NOT NULL,           -- backend:model that made the vector
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,             -- dim little-endian float32, L2-normalised
        created_at TIMESTAMP DEFAULT current_timestamp
    );
    """
)

# Runs record their process and keep their counts current, so a run killed with kill -9 shows what it
# did, and a later command can see that its process is gone.
migration(
    """
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host VARCHAR;
    ALTER TABLE runs ADD COLUMN updated_at TIMESTAMP;
    """
)

# A document's id is its content hash; the id it had in the corpus is kept beside it, so different
# texts that share a source id are all kept. Generations stop storing whole prompts (mostly a task's
# shared few-shot prefix): the item's input is kept instead, the prompts are rebuilt from it and the raw
# outputs on request, and prompt_hash says whether the rebuilt prompts are the ones that were sent.
migration(
    """
    ALTER TABLE documents ADD COLUMN source_id VARCHAR;
    ALTER TABLE generations ADD COLUMN item_data JSON;
    ALTER TABLE generations ADD COLUMN prompt_hash VARCHAR;
    """
)

# A run keeps its notes (what changed it: a setting lowered, the requests a server let it keep in flight),
# so `personahub runs` can show them after the run.
migration("ALTER TABLE runs ADD COLUMN notes JSON;")


# Plugins' own tables are made by their migrations (the register_migrations hook); this records
# which of each plugin's migrations a store has run.
migration(
    """
    CREATE TABLE plugin_migrations (
        owner VARCHAR NOT NULL,           -- the plugin that registered the migrations
        version INTEGER NOT NULL,         -- position in its list, from 1
        applied_at TIMESTAMP,
        PRIMARY KEY (owner, version)
    );
    """
)


class Migrations:
    """Bringing a store's schema, and each plugin's tables, up to date."""

    def _migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
        done = {row[0] for row in self.con.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            with self.transaction():
                self.con.execute(sql)
                self.con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, now()])

    # -- plugin migrations ---------------------------------------------------------------------
    def migrate_plugin(self, owner: str, statements: Sequence[str]) -> int:
        """Run the plugin's migrations this store has not run yet, in order, each once (recorded by
        owner and position in ``plugin_migrations``); returns how many ran."""
        if self.read_only:
            return 0
        done = self.scalar("SELECT count(*) FROM plugin_migrations WHERE owner = ?", [owner])
        for version, sql in enumerate(statements, start=1):
            if version <= done:
                continue
            try:
                with self.transaction():
                    self.con.execute(sql)
                    self.con.execute("INSERT INTO plugin_migrations VALUES (?, ?, ?)", [owner, version, now()])
            except duckdb.Error as exc:
                raise StoreError(f"migration {version} of plugin '{owner}' failed: {str(exc).splitlines()[0]}") from None
        return max(len(statements) - done, 0)

