"""Import personas: PersonaHub's released ``{"persona": ...}`` jsonl (optionally with an id), or plain
text with one persona per line. Invalid lines are reported with their line numbers and skipped."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.ingest import open_text
from personahub_core.tasks import PersonaSource, work_key

BATCH = 10_000
MAX_REPORTED = 5


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Path = Field(..., description="a .jsonl file of {\"persona\": ...} or a .txt file, one persona per line (.gz ok)")
    field: str = Field("persona", description="jsonl field holding the persona text")
    id_field: str = Field("id", description="jsonl field holding the original id, when present")


class ImportPersonas(PersonaSource):
    name = "import"
    description = "import personas from PersonaHub jsonl or text, one per line"
    Options = Options
    uses_backend = False

    def records(self, ctx):
        path = self.options.input
        if not path.is_file():
            raise UsageError(f"--input {path}: no such file")
        as_json = ".jsonl" in path.suffixes or ".json" in path.suffixes
        bad = 0
        with open_text(path) as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                problem, persona, original_id = self.parse_line(line, as_json)
                if problem:
                    bad += 1
                    if bad <= MAX_REPORTED:
                        ctx.note(f"{path}:{n}: {problem}; skipped")
                    continue
                yield {
                    # Original ids are kept; without one, the text itself names the persona.
                    "id": original_id or "imp-" + work_key(persona),
                    "persona": persona, "origin": "import", "source_id": f"{path.name}:{n}",
                    "hop": 0, "task": self.name, "run_id": ctx.run_id,
                }
        ctx.stats.items_failed += bad
        if bad > MAX_REPORTED:
            ctx.note(f"... {bad} invalid lines in all")

    def parse_line(self, line: str, as_json: bool) -> tuple[str | None, str, str | None]:
        if not as_json:
            return None, line.strip(), None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"invalid JSON ({exc.msg})", "", None
        if not isinstance(row, dict):
            return "not a JSON object", "", None
        persona = row.get(self.options.field)
        if not isinstance(persona, str) or not persona.strip():
            return f"no '{self.options.field}' text", "", None
        original = row.get(self.options.id_field)
        return None, " ".join(persona.split()), None if original is None else str(original)

    def run(self, ctx) -> None:
        batch: list[dict] = []
        progress = ctx.progress("import", total=None)
        with progress:
            for record in self.records(ctx):
                batch.append(record)
                if len(batch) >= BATCH:
                    self.flush(ctx, batch)
                    progress.update(progress.task_ids[0], advance=len(batch))
                    batch = []
            self.flush(ctx, batch)
            progress.update(progress.task_ids[0], advance=len(batch))

    def flush(self, ctx, batch: list[dict]) -> None:
        if ctx.limit is not None:
            batch = batch[: max(ctx.limit - ctx.stats.items_done, 0)]
        added = ctx.store.insert_personas(batch) if batch else 0
        ctx.stats.items_done += added
        ctx.stats.personas_added += added
        ctx.stats.items_skipped += len(batch) - added


@hookimpl
def register_tasks(register):
    register(ImportPersonas)
