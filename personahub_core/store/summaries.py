"""Read-only figures the commands show (``stats``, ``personas show``, ``report``, the dataset card):
each a named query here, so those modules hold no SQL. Aggregates are computed in DuckDB; the callers
see only the few rows they show."""

from __future__ import annotations

from .personas import KEPT

# A task's output text: a synthesizer's "synthesized text", else the personas a source or expander made.
OUTPUT_TEXT = "json_extract_string(g.output, '$.\"synthesized text\"')"
ROW_TEXT = f"coalesce({OUTPUT_TEXT}, array_to_string(json_extract_string(g.output, '$.personas[*]'), ' | '), '')"
VERIFIES = "json_extract_string(output, '$.verifies')"  # the task a verdict row judges
# Every row of a verifier task, typed; a failed one has no output, its options say what it judged.
VERDICT_ROWS = (f"(SELECT task AS verifier, coalesce({VERIFIES}, json_extract_string(options, '$.task')) AS verifies, "
                "status, json_extract_string(output, '$.passed') = 'true' AS passed, "
                "TRY_CAST(json_extract_string(output, '$.agreement') AS DOUBLE) AS agreement, "
                "TRY_CAST(json_extract_string(output, '$.score') AS DOUBLE) AS score, "
                "json_extract_string(output, '$.matches_own_answer') AS matches FROM generations "
                f"WHERE task IN (SELECT task FROM generations WHERE {VERIFIES} IS NOT NULL))")


class Summaries:
    # -- the store at a glance -----------------------------------------------------------------------
    def generation_counts(self) -> list[tuple]:
        """(task, model or '?', status, rows), for every combination stored."""
        return self.query("SELECT task, coalesce(model, '?'), status, count(*) FROM generations GROUP BY ALL ORDER BY ALL")

    def stored_tasks(self) -> list[str]:
        """Tasks with any stored row, by name."""
        return [r[0] for r in self.query("SELECT DISTINCT task FROM generations ORDER BY 1")]

    def tasks_by_first_row(self) -> list[str]:
        """Tasks with any stored row, in the order they first stored one."""
        return [r[0] for r in self.query("SELECT task FROM generations GROUP BY 1 ORDER BY min(created_at)")]

    def personas_by_origin(self) -> dict[str, int]:
        return dict(self.query("SELECT origin, count(*) FROM personas GROUP BY 1 ORDER BY 1"))

    def personas_by_origin_and_hop(self) -> list[tuple]:
        return self.query("SELECT origin, hop, count(*) FROM personas GROUP BY 1, 2 ORDER BY 1, 2")

    def latest_runs(self, limit: int) -> list[tuple]:
        """(task, status, done, failed, completion tokens, seconds, started), the latest first."""
        return self.query("SELECT task, status, items_done, items_failed, completion_tokens, seconds, started_at "
                          "FROM runs ORDER BY started_at DESC LIMIT ?", [limit])

    # -- one persona ---------------------------------------------------------------------------------
    def persona(self, persona_id: str) -> dict | None:
        rows = self.query_dicts("SELECT * FROM personas WHERE id = ?", [persona_id])
        return rows[0] if rows else None

    def persona_marks(self, persona_id: str) -> list[dict]:
        return self.query_dicts("SELECT method, cluster_id, duplicate_of, similarity, reason FROM dedup_marks "
                                "WHERE persona_id = ?", [persona_id])

    def persona_generations(self, persona_id: str, made_by: str | None) -> list[dict]:
        """The generation ``made_by`` (that made the persona), then those made from the persona, oldest
        first, with what replaying them needs."""
        return self.query_dicts(
            "SELECT key, task, status, output, error, input_id, options, raw_output, item_data, prompt_hash, prompt, "
            "template_version, key = ? AS made_this FROM generations WHERE key = ? OR input_id = ? "
            "ORDER BY made_this DESC, created_at", [made_by, made_by, persona_id])

    def persona_texts(self, ids: list[str]) -> dict[str, str]:
        """The text of each of ``ids`` that is stored, marked or not."""
        return dict(self.query("SELECT id, persona FROM personas WHERE id IN (SELECT unnest(?))", [ids]))

    # -- kept personas ---------------------------------------------------------------------------------
    def kept_length_stats(self) -> tuple:
        """(count, mean, median, shortest, longest) of kept personas' lengths in words."""
        return self.query(
            f"SELECT count(*), avg(w), median(w), min(w), max(w) FROM (SELECT len(string_split(trim(persona), ' ')) AS w "
            f"FROM personas p WHERE {KEPT})")[0]

    def kept_length_histogram(self) -> dict[int, int]:
        """Kept personas by length in words, in buckets of 5 (20: a hundred or more)."""
        return dict(self.query(
            f"SELECT least(w // 5, 20) AS b, count(*) FROM (SELECT len(string_split(trim(persona), ' ')) AS w "
            f"FROM personas p WHERE {KEPT}) GROUP BY 1 ORDER BY 1"))

    def kept_common_words(self, stopwords: list[str], limit: int) -> list[tuple]:
        """The ``limit`` commonest words (lower case, over two letters, not ``stopwords``) of kept personas."""
        return self.query(
            f"SELECT w, count(*) AS n FROM (SELECT unnest(regexp_split_to_array(lower(persona), '[^a-z]+')) AS w "
            f"FROM personas p WHERE {KEPT}) WHERE length(w) > 2 AND w NOT IN (SELECT unnest(?)) "
            f"GROUP BY 1 ORDER BY n DESC, w LIMIT ?", [stopwords, limit])

    def kept_persona_texts(self) -> list[str]:
        return [r[0] for r in self.query(f"SELECT persona FROM personas p WHERE {KEPT}")]

    # -- the persona graph -----------------------------------------------------------------------------
    def expansion_count(self) -> int:
        return self.scalar("SELECT count(*) FROM personas WHERE origin = 'expansion'")

    def deepest_hop(self) -> int | None:
        return self.scalar("SELECT max(hop) FROM personas")

    def expansion_relations(self, limit: int) -> list[tuple]:
        """(relation or '(none)', count) of expanded personas, the commonest first."""
        return self.query("SELECT coalesce(relation, '(none)'), count(*) AS n FROM personas WHERE origin = 'expansion' "
                          "GROUP BY 1 ORDER BY n DESC LIMIT ?", [limit])

    def deepest_expansions(self) -> list[str]:
        """Ids of the expanded personas at the deepest hop."""
        return [r[0] for r in self.query("SELECT id FROM personas WHERE origin = 'expansion' AND hop = "
                                         "(SELECT max(hop) FROM personas WHERE origin = 'expansion') ORDER BY id")]

    def persona_chains(self, leaves: list[str]) -> list[tuple]:
        """(leaf, persona, relation, hop) of each leaf and its ancestors up to the root, in one recursive query."""
        return self.query(
            """WITH RECURSIVE chain(leaf, id, parent_id, persona, relation, hop) AS (
                 SELECT id, id, parent_id, persona, relation, hop FROM personas WHERE id IN (SELECT unnest(?))
                 UNION ALL
                 SELECT c.leaf, p.id, p.parent_id, p.persona, p.relation, p.hop FROM personas p JOIN chain c ON p.id = c.parent_id
               ) SELECT leaf, persona, relation, hop FROM chain ORDER BY leaf, hop""", [leaves])

    # -- dedup marks -------------------------------------------------------------------------------------
    def marks_by_method(self) -> list[tuple[str, int, bool]]:
        """(method, marks, whether its marks name the persona they duplicate) per method. A mark with only
        a reason is a filter's (a quality check), not deduplication's."""
        return [(m, n, bool(partners)) for m, n, partners in self.query(
            "SELECT method, count(*), count(duplicate_of) FROM dedup_marks GROUP BY 1 ORDER BY 1")]

    def mark_reasons(self, method: str, limit: int) -> list[tuple]:
        return self.query("SELECT coalesce(reason, '?'), count(*) AS n FROM dedup_marks WHERE method = ? "
                          "GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?", [method, limit])

    def largest_clusters(self, method: str, limit: int) -> list[tuple]:
        """(kept persona's id, the first 3 marked texts, their similarities, cluster size), largest first."""
        return self.query(
            "SELECT m.duplicate_of, list(p.persona ORDER BY p.seq)[:3], list(m.similarity ORDER BY p.seq)[:3], "
            "count(*) AS n FROM dedup_marks m JOIN personas p ON p.id = m.persona_id "
            "WHERE m.method = ? AND m.duplicate_of IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?", [method, limit])

    # -- one task's rows --------------------------------------------------------------------------------
    def status_counts(self, task: str) -> dict[str, int]:
        return dict(self.query("SELECT status, count(*) FROM generations WHERE task = ? GROUP BY 1", [task]))

    def failure_reasons(self, task: str, limit: int) -> list[tuple]:
        """The commonest errors of ``task``'s rejected and failed rows, numbers written N."""
        return self.query(
            "SELECT regexp_replace(error, '[0-9]+', 'N', 'g') AS reason, count(*) AS n FROM generations "
            "WHERE task = ? AND status <> 'ok' GROUP BY 1 ORDER BY n DESC, 1 LIMIT ?", [task, limit])

    def output_length_histogram(self, task: str) -> dict[int, int]:
        """Finished rows by their text's length in words, in buckets of 10 (30: 300 or more)."""
        return dict(self.query(
            f"SELECT least(len(string_split(trim({ROW_TEXT}), ' ')) // 10, 30) AS b, count(*) FROM generations g "
            f"WHERE task = ? AND status = 'ok' GROUP BY 1 ORDER BY 1", [task]))

    def output_sample(self, task: str, limit: int) -> list[str]:
        """Up to ``limit`` finished rows' texts, a fixed sample (by key hash)."""
        return [r[0] or "" for r in self.query(
            f"SELECT {ROW_TEXT} FROM generations g WHERE task = ? AND status = 'ok' ORDER BY hash(key) LIMIT ?",
            [task, limit])]

    def task_tokens(self, task: str) -> tuple:
        """(mean completion tokens, total completion tokens, total seconds) of ``task``'s rows."""
        return self.query("SELECT avg(completion_tokens), sum(completion_tokens), sum(seconds) FROM generations "
                          "WHERE task = ?", [task])[0]

    def task_examples(self, task: str, limit: int) -> list[tuple]:
        """(input, whether it is a document, text, model) of a fixed sample of finished rows: the input is a
        persona, or for a persona source the document (its opening words)."""
        return self.query(
            f"SELECT coalesce(p.persona, left(d.text, 240) || CASE WHEN length(d.text) > 240 THEN '…' ELSE '' END), "
            f"p.id IS NULL AND d.id IS NOT NULL, {ROW_TEXT}, g.model FROM generations g "
            f"LEFT JOIN personas p ON p.id = g.input_id LEFT JOIN documents d ON d.id = g.input_id "
            f"WHERE g.task = ? AND g.status = 'ok' ORDER BY hash(g.key || 'example') LIMIT ?", [task, limit])

    # -- verdicts ---------------------------------------------------------------------------------------
    def has_verdicts(self) -> bool:
        return bool(self.scalar(f"SELECT count(*) FROM generations WHERE {VERIFIES} IS NOT NULL"))

    def verdict_groups(self) -> list[dict]:
        """Per verifier and judged task: rows judged (n), passed, unanswered, solved (with an agreement),
        scored, and how many agreed answers match the row's own (matches of with_own)."""
        return self.query_dicts(
            "SELECT verifier, verifies, count(*) FILTER (status = 'ok') AS n, count(*) FILTER (passed) AS passed, "
            "count(*) FILTER (status <> 'ok') AS unanswered, count(agreement) AS solved, count(score) AS scored, "
            "count(*) FILTER (matches = 'true') AS matches, count(matches) AS with_own "
            f"FROM {VERDICT_ROWS} GROUP BY ALL ORDER BY 2, 1")

    def agreement_histogram(self, verifier: str, verifies: str) -> list[tuple]:
        """(agreement rounded to 0.01, rows) of the verifier's verdicts on ``verifies``."""
        return self.query(f"SELECT round(agreement, 2) AS a, count(*) FROM {VERDICT_ROWS} WHERE verifier = ? "
                          "AND verifies = ? AND agreement IS NOT NULL GROUP BY 1 ORDER BY 1", [verifier, verifies])

    def score_counts(self, verifier: str, verifies: str) -> dict[int, int]:
        """Rows per whole score of the verifier's verdicts on ``verifies``."""
        return dict(self.query(f"SELECT round(score)::INTEGER, count(*) FROM {VERDICT_ROWS} WHERE verifier = ? "
                               "AND verifies = ? AND score IS NOT NULL GROUP BY 1", [verifier, verifies]))

    # -- what an export's rows came from (the dataset card) ----------------------------------------------
    def exported_models(self, task: str | None, include_all: bool) -> list[str]:
        """Models that made the exported rows: the personas' (``task`` None), or the task's rows'."""
        if task is None:
            return [r[0] for r in self.query(
                f"SELECT DISTINCT model FROM (SELECT * FROM personas p WHERE {'TRUE' if include_all else KEPT}) "
                "WHERE model IS NOT NULL ORDER BY 1")]
        kept = "TRUE" if include_all else "status = 'ok'"
        return [r[0] for r in self.query(
            f"SELECT DISTINCT model FROM generations WHERE task = ? AND {kept} AND model IS NOT NULL ORDER BY 1", [task])]

    def exported_statuses(self, task: str, include_all: bool) -> dict[str, int]:
        kept = "TRUE" if include_all else "status = 'ok'"
        return dict(self.query(f"SELECT status, count(*) FROM generations WHERE task = ? AND {kept} "
                               "GROUP BY 1 ORDER BY 1", [task]))

    def task_option_sets(self, task: str) -> list[str]:
        """The distinct options (JSON text) ``task``'s finished rows were made with."""
        return [r[0] for r in self.query(
            "SELECT DISTINCT options::VARCHAR FROM generations WHERE task = ? AND status = 'ok' ORDER BY 1", [task])]

    def task_sampling(self, task: str) -> str | None:
        """The sampling (JSON text) of one of ``task``'s finished rows."""
        return self.scalar("SELECT any_value(sampling)::VARCHAR FROM generations WHERE task = ? AND status = 'ok'", [task])

    def exported_origins(self, task: str | None, include_all: bool) -> list[tuple]:
        """(origin, personas, their models, deepest hop) of the exported rows' personas: the kept personas
        (``task`` None; all with ``include_all``), or those of the task's (finished) rows."""
        if task is None:
            exported, params = f"SELECT * FROM personas p WHERE {'TRUE' if include_all else KEPT}", []
        else:
            kept = "TRUE" if include_all else "g.status = 'ok'"
            exported = f"SELECT p.* FROM generations g JOIN personas p ON p.id = g.input_id WHERE g.task = ? AND {kept}"
            params = [task]
        return self.query(f"SELECT origin, count(*), list(DISTINCT model ORDER BY model) FILTER (model IS NOT NULL), "
                          f"max(hop) FROM ({exported}) GROUP BY 1 ORDER BY 1", params)
