"""Final answers: found in a solution, read as values, compared by value.

    "Final answer: $3,024"        -> 3024
    "\\frac{1}{2}", "1/2", "0.5"   -> 1/2 (the same value)
    "6π − 9√3/2 square metres"    -> 6*pi - 9*sqrt(3)/2 (units and remarks dropped)
    "25%"                          -> 1/4, and also equal to "25" (a model may leave the sign out)
    "Quinn", "the WINE crate"      -> not numbers: compared as normalised words

A value is parsed by sympy, which evaluates the text it is given: only text made of digits,
operators, brackets, single letters and a few known names (pi, sqrt...) reaches it, with at most one
power, so a model's answer can neither run code nor ask for a number too big to compute.
"""

from __future__ import annotations

import cmath
import functools
import re
from dataclasses import dataclass

import sympy
from sympy.parsing.sympy_parser import (convert_xor, implicit_multiplication_application, parse_expr,
                                        standard_transformations)

NAMES = {"pi", "sqrt", "sin", "cos", "tan", "log", "ln"}  # words a value may contain (not exp: towers of it never finish)
TRANSFORMATIONS = standard_transformations + (implicit_multiplication_application, convert_xor)
SYMBOLS = {"−": "-", "–": "-", "×": "*", "·": "*", "⋅": "*", "÷": "/", "π": "pi", "∶": ":", "＄": "$"}
LATEX = [(r"\\left|\\right|\\[,;!]|\\displaystyle", ""), (r"\\(?:cdot|times)", "*"), (r"\\div", "/"),
         (r"\\pi\b", "pi"), (r"\\%", "%"), (r"\\\$", "$"), (r"\\[()\[\]]", " "), (r"\\(?:text|mathrm|mbox)\{([^{}]*)\}", r" \1 ")]
FINAL = re.compile(r"final answer\s*\**\s*[:：]\s*\**\s*(.+)", re.I)
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Value:
    expr: sympy.Expr
    percent: bool  # written with % (expr is already divided by 100)
    decimals: int | None  # places, when written as a plain decimal such as 11.06


def final_answer(text: str) -> str | None:
    """The text after the first "Final answer:" (or inside \\boxed{}), up to the end of its line."""
    found = FINAL.search(text) or re.search(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}", text)
    if not found:
        return None
    answer = found.group(1).strip().split("\n", 1)[0].strip().strip("*").strip()
    return answer or None


def same_answer(a: str, b: str) -> bool:
    """Whether two final answers say the same: by value when both are numbers or expressions, else by words."""
    x, y = value(a), value(b)
    if x is not None and y is not None:
        return equal_values(x, y)
    return x is None and y is None and words(a) == words(b)


def majority(answers: list[str | None]) -> tuple[str | None, int]:
    """The answer most of them give (the first of its group as written) and how many give it; no
    answer (None) agrees with nothing. Ties go to the answer given first."""
    groups: list[list[str]] = []
    for answer in answers:
        if answer is None:
            continue
        group = next((g for g in groups if same_answer(g[0], answer)), None)
        if group is None:
            groups.append([answer])
        else:
            group.append(answer)
    best = max(groups, key=len, default=None)  # max keeps the first of equal lengths
    return (best[0], len(best)) if best else (None, 0)


def equal_values(x: Value, y: Value) -> bool:
    if x.expr == y.expr:  # exact, however large
        return True
    if x.expr.free_symbols or y.expr.free_symbols:
        try:
            return sympy.simplify(x.expr - y.expr) == 0
        except (TypeError, ValueError, NotImplementedError):
            return False
    try:
        a, b = complex(x.expr), complex(y.expr)
    except (TypeError, ValueError):
        return False
    if not (cmath.isfinite(a) and cmath.isfinite(b)):  # too large for a float, and not exactly equal
        return False
    if _close(a, b) or _rounded_alike(x, a, y, b) or _rounded_alike(y, b, x, a):
        return True
    # "25%" against "25": the same answer with the sign left out.
    return x.percent != y.percent and (_close(a * 100, b) if x.percent else _close(a, b * 100))


def _close(a: complex, b: complex) -> bool:
    return abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b))


def _rounded_alike(x: Value, a: complex, y: Value, b: complex) -> bool:
    """x is a decimal of 2+ places (11.06) and y an exact value (6π − 9√3/2) that rounds to it."""
    if x.decimals is None or x.decimals < 2 or y.decimals is not None or a.imag or b.imag:
        return False
    return round(b.real, x.decimals) == round(a.real, x.decimals)


def words(answer: str) -> str:
    """A non-numeric answer as its lower-case words, without articles, "and" or punctuation."""
    return " ".join(w for w in re.findall(r"\w+", answer.lower()) if w not in {"the", "a", "an", "and"})


@functools.lru_cache(maxsize=4096)
def value(answer: str) -> Value | None:
    """The answer as a sympy value, or None when it is not a number or a small expression."""
    text = _plain(answer)
    percent = bool(re.search(r"%|\bper ?cent\b", text))
    text = re.sub(r"%|\bper ?cent\b", " ", text).strip(" .;:!,")
    text = _drop_lead_words(text)
    text = _drop_units(text)
    text = text.replace("²", "^2").replace("³", "^3")
    text = re.sub(r"√\s*(\d+(?:\.\d+)?|[a-z]\b|\([^()]*\))", r"sqrt(\1)", text).strip()
    if not _safe(text):
        return None
    try:
        expr = parse_expr(text, transformations=TRANSFORMATIONS, evaluate=True)
    except Exception:  # sympy's parser raises many kinds (SyntaxError, TokenError, TypeError...)
        return None
    if not isinstance(expr, sympy.Expr):
        return None
    decimals = len(text.split(".")[1]) if re.fullmatch(r"-?\d+\.\d+", text) else None
    return Value(expr / 100 if percent else expr, percent, decimals)


def _plain(answer: str) -> str:
    """Lower case, LaTeX and Unicode maths as plain operators, remarks in brackets, currency and
    thousands separators gone; the right-hand side of an equation."""
    text = answer.strip().lower()
    for pattern, replacement in LATEX:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}", r"\1", text)
    for _ in range(3):  # nested fractions, innermost first
        text = re.sub(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    text = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", text).replace("{", "(").replace("}", ")")
    for symbol, replacement in SYMBOLS.items():
        text = text.replace(symbol, replacement)
    text = re.sub(r"\(([^()]*)\)", lambda m: " " if _is_remark(m.group(1)) else m.group(0), text)
    text = text.rsplit("=", 1)[-1]
    text = re.sub(r"[$€£¥]", "", text)
    return re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text).strip()


def _is_remark(inside: str) -> bool:
    """"(about 11.06 m²)" is a remark; "(3)" or "(pi)" is part of the value."""
    return any(len(w) >= 2 and w not in NAMES for w in re.findall(r"[a-z]+", inside))


def _drop_lead_words(text: str) -> str:
    """"the answer is 42", "about 11.06" -> the number."""
    lead = re.match(r"^((?:[a-z]+[\s:,]+)+)(?=[-+(\d.√])", text)
    if lead and not set(re.findall(r"[a-z]+", lead.group(1))) & NAMES:
        return text[lead.end():]
    return text


def _drop_units(text: str) -> str:
    """"24 km/h", "134 dollars", "11.06 m²" -> the number; "2x" and "3 pi" stay as they are."""
    found = re.match(r"^(.*?[\d)])(\s*)((?:[a-z°]+[²³]?\.?[\s/\-]*)+)$", text)
    if not found:
        return text
    head, space, unit = found.groups()
    names = re.findall(r"[a-z]+", unit)
    if any(len(n) >= 2 and n not in NAMES for n in names) or (space and all(len(n) == 1 for n in names)):
        return head
    return text


def _safe(text: str) -> bool:
    """Text sympy may evaluate: arithmetic on numbers, single letters and known names; one power at most."""
    if not text or len(text) > 80 or not re.fullmatch(r"[0-9a-z+\-*/^().\s]+", text):
        return False
    if any(len(w) > 1 and w not in NAMES for w in re.findall(r"[a-z]+", text)):
        return False
    powers = len(re.findall(r"\^|\*\*", text))
    return powers <= 1 and not re.search(r"(?:\^|\*\*)\s*\(?\s*-?\d{4,}", text)
