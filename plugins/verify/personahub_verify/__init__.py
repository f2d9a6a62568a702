"""Verified answers (after Persona Hub, section 5.1.1, which kept only the math problems on whose answers
two strong models agreed): ``personahub run --plugin verify --task math`` solves each stored problem
``--k`` times, reads each solution's final answer, and compares the answers by value (``answers.py``).
A row passes when at least ``--min-agreement`` of the k answers agree, and, when the row carries its
own final answer (math ``--with-solution``), the agreed answer is that one. ``--model``/``--backend``
make another model the solver: its verdicts are rows of their own.

Tools rows made with ``--implement`` are not solved: their code is parsed with ``ast.parse`` (never
compiled, imported or run), and the row passes when it parses and defines the tool's function.
"""

from __future__ import annotations

import ast

from pydantic import Field

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import demonstrations, few_shot_block, synthesis_prompt
from personahub_core.tasks import Prompt, Verdict, Verifier, VerifierOptions, WorkItem



class Options(VerifierOptions):
    k: int = Field(3, ge=1, le=20, description="solutions per problem")
    min_agreement: float = Field(0.66, gt=0, le=1, description="share of the k answers that must agree "
                                                               "for a row to pass (0.66: two of three)")


class AnswerVerifier(Verifier):
    name = "verify"
    description = "solve stored math or reasoning problems k times and compare the answers by value; parse tools' code"
    template = "verify-solve"
    template_version = "1"
    Options = Options

    def item_data(self, row: dict) -> dict | None:
        output = row["output"]
        if "tool" in output:  # a tools row: only its implementation can be checked
            code = output.get("implementation")
            return None if code is None else {"code": code, "function_name": output["tool"]["function_name"]}
        if row["text"] is None:  # not a synthesizer's row (personas, verdicts): nothing to solve
            return None
        data = {"problem": row["text"]}
        if output.get("final_answer"):
            data["own_answer"] = output["final_answer"]
        return data

    def solve_prompt(self, problem: str) -> Prompt:
        shots = few_shot_block(
            demonstrations(__name__), "few-shot",
            lambda d, _: f"Problem: {d['problem']}\nSolution: {d['solution']}\nFinal answer: {d['final_answer']}",
        )
        return synthesis_prompt(
            header="Each problem below is followed by a short worked solution and its final answer.",
            examples=shots,
            query=f"Problem: {problem}\nSolution:",
            request=f"Solve this problem step by step. End with one line \"Final answer: ...\" giving only the "
                    f"answer.\n\nProblem: {problem}",
            max_tokens=256,
            stop=["\n\n", "\nProblem:"],
        )

    def run_item(self, item: WorkItem):
        if "code" in item.data:
            return code_verdict(item.data["code"], item.data["function_name"])
        from .answers import final_answer  # sympy takes 0.6 s to import: only a run that verifies pays it

        answers = []
        for _ in range(self.options.k):  # one call per solution, each with its own seed
            completion = yield self.solve_prompt(item.data["problem"])
            answers.append(final_answer(completion.text))
        return answer_verdict(answers, item.data.get("own_answer"), self.options.min_agreement)


def answer_verdict(answers: list[str | None], own_answer: str | None, min_agreement: float) -> Verdict:
    """Agreement is the share of all k solutions giving the majority answer (a solution without a
    final answer counts against it)."""
    from .answers import majority, same_answer

    agreed, count = majority(answers)
    agreement = count / len(answers)
    matches = None if own_answer is None or agreed is None else same_answer(agreed, own_answer)
    passed = agreed is not None and agreement >= min_agreement and matches is not False
    return Verdict(passed=passed, agreement=round(agreement, 4),
                   fields={"k": len(answers), "answers": answers, "majority_answer": agreed,
                           "own_answer": own_answer, "matches_own_answer": matches})


def code_verdict(code: str, function_name: str) -> Verdict:
    """Whether the code is Python that defines the function: parsed, never executed."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        where = f"line {exc.lineno}: " if getattr(exc, "lineno", None) else ""
        return Verdict(passed=False, fields={"parses": False, "defines_function": False,
                                             "problem": f"{where}{getattr(exc, 'msg', None) or exc}"})
    defines = any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function_name
                  for node in tree.body)
    return Verdict(passed=defines, fields={"parses": True, "defines_function": defines,
                                           "problem": None if defines else f"no top-level def {function_name}()"})


@hookimpl
def register_tasks(register):
    register(AnswerVerifier)
