"""Cleaning and checking a model's persona description, shared by every task that makes personas."""

from __future__ import annotations

import re

from .tasks import Rejected

MIN_WORDS, MAX_WORDS = 5, 80
_LABEL = re.compile(r"^\s*(persona|answer|related persona|description|output)\s*[:\-]\s*", re.I)
_PERSON_START = re.compile(r"^(a|an|the|one|someone|somebody|people|person)\b", re.I)
_CHATTER = re.compile(r"\s+(I hope|Let me know|Note:|This persona|Explanation:).*$", re.I | re.S)


def clean_persona(raw: str, continues: str = "") -> str:
    """Strip labels, quotes and trailing chatter; raise Rejected with a reason if it is no persona.

    ``continues``: the completion prompt ended with these words (e.g. "A"), so a base model's answer
    like " nurse who ..." or "n editor ..." is their continuation.
    """
    if continues and raw.startswith((" ", "n ")):
        raw = continues + raw
    text = raw.strip().splitlines()[0] if raw.strip() else ""
    text = _LABEL.sub("", text)
    text = text.strip().strip("\"'`*").strip()
    text = _CHATTER.sub("", text).strip()
    if not text:
        raise Rejected("empty answer")
    words = text.split()
    if len(words) < MIN_WORDS:
        raise Rejected(f"too short ({len(words)} words)")
    if len(words) > MAX_WORDS:
        raise Rejected(f"too long ({len(words)} words)")
    if not _PERSON_START.match(text):
        raise Rejected("does not describe a person (expected 'A ...' or 'An ...')")
    if len(set(w.lower() for w in words)) < len(words) / 2:
        raise Rejected("repeats itself")
    if text[-1] not in ".!":
        text += "."
    return text[0].upper() + text[1:]
