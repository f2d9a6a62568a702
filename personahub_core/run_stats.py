"""What a run counts as it goes: the summary, the status file and the runs table all read it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunStats:
    items_done: int = 0
    items_failed: int = 0
    items_rejected: int = 0
    items_skipped: int = 0
    items_skipped_failed: int = 0  # of the skipped, those stored as failures: not results
    personas_added: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_calls: int = 0
    notes: list[str] = field(default_factory=list)
