"""What a recipe's JSON schema may hold, checked when the recipe loads, before any work.

- ``$ref`` only inside the schema (``#/...``): a reference to a URL or a file would make the validator,
  or the grammar builder, fetch it (once per item), and nothing may use the network at run time.
- Regex ``pattern``s that cannot backtrack catastrophically: a repeat over a part that can itself match
  in several ways (``(a+)+``, ``(a|aa)*``, ``(\\w+\\s?)*``) takes exponential time on a near-miss,
  and every answer is matched against it. Refusing that shape (a repeat holding a repeat of varying
  count, or an alternation of longer branches) is simple and never hangs, at the price of refusing
  some safe patterns too (``\\w+(\\s\\w+)*``); ``[ab]+``, ``(cat|dog)``, ``\\d{4}(-\\d{2}){2}`` pass.
- Finite numbers only: TOML allows ``nan`` and ``inf``, JSON does not.
"""

from __future__ import annotations

import math
import re
import re._parser as sre  # the stdlib's own regex parser: the pattern's structure, not its text
from typing import Any, Iterator

REFERENCES = ("$ref", "$dynamicRef", "$recursiveRef")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def refused_in_schema(schema: Any) -> tuple[str, str] | None:
    """(where, problem) for the first thing in the schema that is refused, or None."""
    for where, key, value in _walk(schema, ""):
        if isinstance(value, float) and not math.isfinite(value):
            return where, f"{value} is not a finite number"
        if key in REFERENCES and not (isinstance(value, str) and value.startswith("#")):
            return where, f"{value!r}: only references inside the schema ('#/...') are allowed, never a URL or a file"
        if key == "pattern" and isinstance(value, str) and (problem := regex_problem(value)):
            return where, problem
        if key == "patternProperties" and isinstance(value, dict):
            for pattern in value:
                if problem := regex_problem(pattern):
                    return f"{where}.{pattern}", problem
    return None


def _walk(value: Any, where: str) -> Iterator[tuple[str, str | None, Any]]:
    """(path, key, value) for every value in a JSON-like tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            yield path, key, item
            yield from _walk(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path = f"{where}[{index}]"
            yield path, None, item
            yield from _walk(item, path)


def regex_problem(pattern: str) -> str | None:
    """Why a pattern is refused (it does not compile, or it can backtrack catastrophically), or None."""
    try:
        re.compile(pattern)
        parsed = sre.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"pattern {pattern!r} is not a valid regular expression: {exc}"
    if _ambiguous_repeat(parsed):
        return (f"pattern {pattern!r} repeats a part that can match in several ways (like (a+)+ or (a|aa)*), "
                "which can take exponential time; write it without the nested repeat")
    return None


def _ambiguous_repeat(items) -> bool:
    """Some repeat (of more than once) holds a variable-length repeat or an alternation."""
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            if high > 1 and _varies(body):
                return True
            if _ambiguous_repeat(body):
                return True
        elif any(_ambiguous_repeat(sub) for sub in _subpatterns(op, arg)):
            return True
    return False


def _varies(items) -> bool:
    """The part can match the same text in more than one way: a repeat of varying count, or a branch."""
    for op, arg in items:
        if op in _REPEATS and arg[0] != arg[1]:
            return True
        if op == sre.BRANCH:
            return True
        if any(_varies(sub) for sub in _subpatterns(op, arg)):
            return True
    return False


def _subpatterns(op, arg) -> list:
    """The nested parts of one parsed element (groups, lookarounds, conditionals)."""
    if op == sre.SUBPATTERN:
        return [arg[3]]
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return [arg[1]]
    if op == sre.ATOMIC_GROUP:
        return [arg]
    if op == sre.BRANCH:
        return list(arg[1])
    if op == sre.GROUPREF_EXISTS:
        return [p for p in arg[1:] if p is not None]
    if op in _REPEATS:
        return [arg[2]]
    return []
