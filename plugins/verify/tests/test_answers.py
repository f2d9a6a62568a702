"""Final answers: found in a solution, compared by value (sympy), by words when they are not numbers,
and never handed to sympy when they could run code or ask for a number too big to compute."""

from __future__ import annotations

import pytest

from personahub_verify.answers import final_answer, majority, same_answer, value


@pytest.mark.parametrize("a, b", [
    ("1/2", "0.5"), ("0.5", r"\frac{1}{2}"), (r"\boxed{\dfrac{3}{28}}", "3/28"),
    ("$3,024", "3024 dollars"), ("1,234,567", "1234567"), ("24 km/h", "24"), ("12 cm", "12"),
    ("6π − 9√3/2 square metres (about 11.06 m²)", "6*pi - 9*sqrt(3)/2"), ("6π − 9√3/2", "11.06"),
    ("1/3", "0.33"), ("x = 5", "5"), ("The answer is 42.", "42"), ("25%", "0.25"), ("25%", "25"),
    ("2x+1", "1+2*x"), ("3 pi", "3π"), ("Quinn", "quinn."), ("the WINE crate", "Wine crate"),
    ("Gus, Eli, Farah and Dana", "Gus, Eli, Farah, Dana"),
])
def test_equal_answers(a, b):
    assert same_answer(a, b) and same_answer(b, a)


@pytest.mark.parametrize("a, b", [
    ("1/2", "0.52"), ("0.5", "0.52"), ("12", "13"), ("24", "24.5"), ("2x", "2"), ("Quinn", "Rosa"),
    ("5", "five"), ("Dana, Gus", "Gus, Dana"),
])
def test_different_answers(a, b):
    assert not same_answer(a, b) and not same_answer(b, a)


@pytest.mark.parametrize("text", ["__import__('os').system('touch x')", "x.conjugate()", "9^9^9^9", "2**3**4",
                                  "10^99999", "exp(exp(exp(100)))", "1" * 100])
def test_unsafe_or_huge_text_never_reaches_sympy(text):
    assert value(text) is None


def test_huge_numbers_compare_exactly():
    assert same_answer("10^999", "10^999") and not same_answer("10^999", "10^998") and not same_answer("999^999", "5")


def test_final_answer_is_the_line_after_the_marker():
    assert final_answer("3 × 8 = 24.\nFinal answer: 24 km/h\nProblem: next") == "24 km/h"
    assert final_answer("**Final answer:** 7") == "7"
    assert final_answer(r"so it is \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    assert final_answer("I think it is 7") is None
    assert final_answer("Final answer:") is None


def test_majority_groups_by_value_and_no_answer_agrees_with_nothing():
    assert majority(["12", None, "12.0", "13"]) == ("12", 2)
    assert majority(["1/2", "0.5", r"\frac{1}{2}"]) == ("1/2", 3)
    assert majority([None, None]) == (None, 0)
    assert majority(["7", "8"]) == ("7", 1)  # a tie goes to the answer given first
