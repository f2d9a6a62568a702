"""Words as the instruments count them (quality checks, MinHash shingles): runs of Unicode word
characters, except in scripts written without spaces between words. There each ideograph or kana
(Chinese, Japanese) is a word of its own, and a run of Thai, Lao, Khmer or Myanmar letters gives its
character pairs (single letters of a 44-letter alphabet would make any two long texts look alike).
Without this a whole Chinese sentence is one "word": too short for the quality filter, and an
all-or-nothing shingle for MinHash."""

from __future__ import annotations

import re

# Kana, CJK ideographs (extension A, unified, compatibility, extensions B onwards): one word each.
IDEOGRAPHIC = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Thai, Lao, Myanmar, Khmer (letters and their combining marks): character pairs.
ALPHABETIC_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
_IDEOGRAPH = re.compile(f"[{IDEOGRAPHIC}]")
_ALPHABETIC = re.compile(f"[{ALPHABETIC_UNSPACED}]")
_ALPHABETIC_RUN = re.compile(f"[{ALPHABETIC_UNSPACED}]+")
WORD = re.compile(f"[{IDEOGRAPHIC}]|(?:[^\\W{IDEOGRAPHIC}]|[{ALPHABETIC_UNSPACED}])+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order."""
    return WORD.findall(paired(text.lower()))


def paired(text: str) -> str:
    """``text`` with each run of Thai, Lao, Khmer or Myanmar letters replaced by its character pairs,
    spaced apart (a one-letter run stays as it is)."""
    return _ALPHABETIC_RUN.sub(_pairs, text)


def _pairs(match: re.Match) -> str:
    run = match.group()
    return " " + " ".join(run[i : i + 2] for i in range(max(1, len(run) - 1))) + " "


def kind(char: str) -> str:
    """How ``char`` counts: "ideograph" (a word alone), "paired" (Thai and the like, after ``paired``),
    or "other" (a word character or not, as Unicode says)."""
    if _IDEOGRAPH.match(char):
        return "ideograph"
    return "paired" if _ALPHABETIC.match(char) else "other"
