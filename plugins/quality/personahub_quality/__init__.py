"""Quality filter: marks personas that are empty, too short or too long, repeat themselves, carry
broken characters, or are not descriptions of a person at all (a model's chatter or refusal).

Rules only, no model: cheap enough to run over every new persona before the duplicate passes.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from personahub_core.dedup import DedupOutline
from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Deduplicator
from personahub_core.words import words as words_of

METHOD = "quality"
# Broken text: the replacement character left by a bad decode, or control characters.
BROKEN = re.compile(r"[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# A model talking about the task instead of describing a person.
CHATTER = re.compile(
    r"^\s*(sure|certainly|of course|okay|ok|here (is|are)|i('m| am) sorry|i can(no|')t|i cannot|as an ai|"
    r"i('m| am) (unable|not able)|unfortunately|note:|explanation:|persona\s*\d*\s*:|text:|answer:|output:)(?!\w)"
    r"|\b(as an ai|i cannot help|the (given|provided) text|who is likely to)\b",
    re.I,
)
MARKUP = re.compile(r"https?://|```|^\s*[\[{<]|</?\w+>")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_words: int = Field(4, ge=1, description="fewer words: too short")
    max_words: int = Field(150, ge=1, description="more words: too long for a persona")
    max_chars: int = Field(2000, ge=10, description="more characters: too long for a persona")
    min_distinct: float = Field(0.5, ge=0.0, le=1.0, description="share of distinct words below which a text repeats itself")
    fresh: bool = Field(False, description="forget earlier quality marks and check every persona again")

    @model_validator(mode="after")
    def _bounds(self) -> "Options":
        if self.min_words > self.max_words:
            raise ValueError(f"min-words {self.min_words} is above max-words {self.max_words}")
        return self


def problem(text: str, o: Options) -> str | None:
    """Why ``text`` is not a usable persona, or None."""
    if not text.strip():
        return "empty"
    if BROKEN.search(text):
        return "broken characters (undecodable bytes or control characters)"
    words = words_of(text)  # an ideograph is a word, so Chinese and Japanese are counted fairly
    if not words:
        return "no words"
    if len(text) > o.max_chars:
        return f"too long ({len(text)} characters > {o.max_chars})"
    if len(words) > o.max_words:
        return f"too long ({len(words)} words > {o.max_words})"
    if len(words) < o.min_words:
        return f"too short ({len(words)} words < {o.min_words})"
    if len(words) >= 8 and len(set(words)) < o.min_distinct * len(words):
        return f"repeats itself ({len(set(words))} distinct of {len(words)} words)"
    if re.search(r"\b(\w+)(\s+\1\b){3,}", text.lower()):
        return "repeats itself (a word four times in a row)"
    if CHATTER.search(text):
        return "not a persona description (model chatter or refusal)"
    if MARKUP.search(text):
        return "not a persona description (markup, code or a link)"
    return None


class QualityFilter(DedupOutline, Deduplicator):
    name = METHOD
    description = "marks empty, too short or long, repetitive, broken or non-persona texts"
    Options = Options
    uses_backend = False
    dedup_step = 1  # first in `personahub dedup`: what it marks, the duplicate passes need not compare

    def compare(self, ctx, count, batches) -> None:
        reasons: dict[str, int] = {}
        for batch in batches:
            ids = batch.column("id").to_pylist()
            marks = []
            for pid, text in zip(ids, batch.column("persona").to_pylist()):
                why = problem(text, self.options)
                if why:
                    marks.append({"persona_id": pid, "reason": why})
                    kind = why.split(" (")[0]
                    reasons[kind] = reasons.get(kind, 0) + 1
            self.mark(ctx, ids, marks)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(reasons.items(), key=lambda kv: -kv[1])) or "none"
        ctx.note(f"quality: checked {count} personas; marked {sum(reasons.values())} ({summary})")


@hookimpl
def register_tasks(register):
    register(QualityFilter)
