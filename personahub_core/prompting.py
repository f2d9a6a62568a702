"""What every synthesizer's prompt has in common: the paper's three prompting modes and the checks
a raw answer goes through before a plugin parses it.

    zero-shot          the instruction and the persona, no demonstrations
    few-shot           demonstrations of the output, without the personas they were written for
    persona-few-shot   each demonstration paired with its persona (the paper's persona-enhanced few-shot)

A plugin renders one demonstration as text (``render(demo, with_persona)``); ``few_shot_block`` picks
what the mode shows, and ``synthesis_prompt`` builds the completion form (for base models: the
demonstrations, then the persona's record left open) and the chat form (for instruction-tuned models).
The persona comes last in both, so a batch of prompts shares one long prefix the backend evaluates once.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from .tasks import Completion, Prompt, Rejected

Mode = Literal["zero-shot", "few-shot", "persona-few-shot"]


@functools.cache
def demonstrations(package: str, filename: str = "demonstrations.jsonl") -> list[dict]:
    """A plugin's few-shot demonstrations: a JSONL file shipped inside its own package, e.g.
    ``demonstrations(__name__)`` from the package's ``__init__``. Read once per process."""
    text = (files(package) / filename).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class SynthesisOptions(BaseModel):
    """Options every synthesizer shares; a plugin's Options subclass adds its own."""

    model_config = ConfigDict(extra="forbid")
    mode: Mode = Field("persona-few-shot",
                       description="zero-shot | few-shot | persona-few-shot (demonstrations with their personas)")


def few_shot_block(demos: list[dict], mode: Mode, render: Callable[[dict, bool], str]) -> str:
    """The demonstrations as the prompt shows them, each followed by a blank line ("" for zero-shot)."""
    if mode == "zero-shot":
        return ""
    return "".join(render(demo, mode == "persona-few-shot").strip() + "\n\n" for demo in demos)


def persona_line(demo: dict, shown: bool) -> str:
    """A demonstration's "Persona: ..." line in persona-enhanced few-shot, else nothing."""
    return f"Persona: {demo['persona']}\n" if shown else ""


def synthesis_prompt(*, header: str, examples: str, query: str, request: str, context: str = "",
                     **prompt_args) -> Prompt:
    """Both forms of one call.

    header: what the records below are (completion form); examples: ``few_shot_block(...)``;
    query: the open record the base model continues, e.g. "Persona: ...\\nProblem:";
    request: the chat instruction with the persona in it;
    context: material both forms open with, such as a game world.
    """
    opening = f"{context}\n\n---\n\n" if context else ""
    completion = f"{opening}{header}\n\n{examples}{query}"
    content = request if not examples else f"Here are some examples:\n\n{examples}{request}"
    return Prompt(completion=completion, chat=[{"role": "user", "content": opening + content}], **prompt_args)


_LEAD_LABEL = r"^\s*\**\s*{label}\s*\**\s*:\s*\**\s*"
_CHATTER = re.compile(
    r"\n\s*(?:I hope|Let me know|Note:|Explanation:|This (?:problem|question|prompt|article) )[^\n]*$", re.I)


def answer_text(completion: Completion, *, label: str | None = None, min_words: int = 1,
                max_words: int = 400) -> str:
    """The usable text of a completion, or Rejected with the reason.

    Strips a leading ``label:`` (chat models often repeat it), markdown emphasis and trailing
    chatter; rejects empty, too short, too long, cut-off (hit the token limit) and looping answers.
    """
    if completion.finish_reason == "length":
        raise Rejected("runaway answer: stopped at the token limit")
    text = completion.text.strip()
    if label:
        text = re.sub(_LEAD_LABEL.format(label=re.escape(label)), "", text, flags=re.I)
    text = _CHATTER.sub("", text).strip().strip("\"'`").strip()
    words = text.split()
    if not words:
        raise Rejected("empty answer")
    if len(words) < min_words:
        raise Rejected(f"too short ({len(words)} words, at least {min_words})")
    if len(words) > max_words:
        raise Rejected(f"too long ({len(words)} words, at most {max_words})")
    if repeats_itself(text):
        raise Rejected("repeats itself")
    return text


def repeats_itself(text: str) -> bool:
    """A base model stuck in a loop: the same sentence twice, or few distinct words in a long text."""
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n", text) if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        return True
    words = text.lower().split()
    return len(words) >= 40 and len(set(words)) < len(words) * 0.3


# Chosen on benchmarks/data/copy_check_calibration.jsonl (character 3-gram Jaccard split its near-copies
# from its distinct problems with the widest margin: copies 0.34 and up, distinct at most 0.28), and
# checked on copy_check_heldout.jsonl; benchmarks/copy_check.py prints both.
NEAR_COPY = 0.31


def reject_copies(text: str, *, persona: str, demos: list[str]) -> None:
    """Small base models often echo the persona or a demonstration instead of writing something new."""
    grams = _trigrams(text)
    if _copied_from(grams, persona):
        raise Rejected("repeats the persona instead of answering")
    if any(_copied_from(grams, demo) for demo in demos):
        raise Rejected("copies a demonstration")


def reject_near_copies(problem: str, demos: list[str]) -> None:
    """A problem that is a demonstration with its numbers, names or a few words changed. Calibrated
    on problems of up to ~60 words: longer texts share more 3-grams by chance, so not for articles."""
    if any(copy_similarity(problem, demo) >= NEAR_COPY for demo in demos):
        raise Rejected("a near-copy of a demonstration")


def copy_similarity(text: str, source: str) -> float:
    """Jaccard similarity of the two texts' character 3-gram sets, read in lower case with every number
    as 0 and punctuation as space: a demonstration with its numbers or names changed stays close."""
    a, b = _char_grams(text), _char_grams(source)
    shared = len(a & b)  # the union's size follows from it: one set operation per pair, not two
    return shared / (len(a) + len(b) - shared) if a or b else 0.0


@functools.lru_cache(maxsize=1024)
def _char_grams(text: str) -> frozenset[str]:
    flat = " ".join(re.sub(r"\d+", "0", re.sub(r"[^\w]+", " ", text.lower())).split())
    return frozenset(map("".join, zip(flat, flat[1:], flat[2:])))  # its 3-grams


def _copied_from(grams: set[tuple[str, ...]], source: str, share: float = 0.6) -> bool:
    """Most of the text's word trigrams (``grams``) also occur in the source."""
    return bool(grams) and len(grams & _source_trigrams(source)) >= share * len(grams)


@functools.lru_cache(maxsize=1024)
def _source_trigrams(source: str) -> frozenset[tuple[str, ...]]:
    """The same demonstrations are checked against every answer of a run: split them once."""
    return frozenset(_trigrams(source))


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 3]) for i in range(len(words) - 2)}


# Something to find: a question mark, a question word opening a sentence, "how many/much/...", or an
# imperative opening a sentence. "who" or "which" inside a sentence is a relative pronoun, not a question.
_ASKS = re.compile(
    r"\?|\bhow (?:many|much|long|far|often|old|fast|tall|high|wide|deep|heavy)\b"
    r"|(?:^|[.!:;]\s+|\n\s*)(?:what|which|who|whom|whose|when|where|why|how|is|are|does|do|can|could|will|would|should|"
    r"find|prove|show|calculate|compute|determine|work out|estimate|solve|evaluate|express|simplify|decide|deduce|"
    r"identify|figure out|explain|give|list|name|arrange|rank|order|sort|say)\b", re.I)
_QUANTITY_WORDS = ("zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
                 "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
                 "thousand|million|billion|dozen|half|halves|third|thirds|quarter|quarters|twice|double|triple|"
                 "percent|percentage|single|pair|both|each|every|some|all|none|first|second|last|least|most|more|"
                 "fewer|less|many|much|total|sum|number|amount|average|per|ratio|fraction|probability|area|volume|"
                 "length|distance")
_QUANTITY = re.compile(rf"\d|[%$€£¥]|\b(?:{_QUANTITY_WORDS})\b", re.I)
_CONDITION = re.compile(r"\b(?:if|unless|only|exactly|not|no|never|always|either|neither|nor|before|after|"
                        r"between|next to|left|right|above|below|behind|opposite|same|different|\w+er than)\b", re.I)


def require_problem(text: str, *, quantity: bool = True) -> None:
    """A problem states what it is about and asks for something: a quantity (a number, an amount word)
    or, with ``quantity=False``, a quantity or a condition (if, only, not, left of, taller than ...);
    and something to find. A persona description ("A dentist who ...") has neither."""
    if not _ASKS.search(text):
        raise Rejected("asks no question")
    if not _QUANTITY.search(text) and (quantity or not _CONDITION.search(text)):
        raise Rejected("states no quantity" if quantity else "states no quantity or condition")


def structured_answer(completion: Completion, schema: dict) -> object:
    """The JSON value a grammar-constrained call produced, tidied, or Rejected with the reason.

    Raw control characters inside strings are tolerated (llama-cpp-python's grammar for strings
    allows them) and whitespace is collapsed. A string that stopped exactly at its schema's
    ``maxLength`` was cut off by the grammar: it is cut back to its last full sentence, or rejected.
    """
    if completion.finish_reason == "length":
        raise Rejected("runaway answer: the JSON was cut off at the token limit")
    try:
        value = json.loads(completion.text, strict=False)
    except json.JSONDecodeError as exc:
        raise Rejected(f"invalid JSON: {exc.msg}") from None
    return _tidy(value, schema, "")


def _tidy(value: object, schema: dict, path: str) -> object:
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: _tidy(v, props.get(k, extra if isinstance(extra, dict) else {}), f"{path}.{k}".lstrip("."))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v, schema.get("items", {}), path) for v in value]
    if not isinstance(value, str):
        return value
    text = " ".join(value.split())
    limit = schema.get("maxLength")
    if limit is not None and len(value) >= limit:
        return whole_sentences(text, f"{path or 'value'} cut off at {limit} characters")
    return text


def whole_sentences(text: str, reason: str) -> str:
    """The text up to its last full sentence: itself when it ends with . ! or ?, else cut back to the
    last sentence end, else Rejected(reason). A text without a final stop was cut mid-sentence."""
    if text.rstrip("\"')”").endswith((".", "!", "?")):
        return text
    cut = max(text.rfind(mark) for mark in (". ", "! ", "? "))
    if cut < 0:
        raise Rejected(reason)
    return text[: cut + 1]
