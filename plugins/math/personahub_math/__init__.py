"""Math problems written for a persona (Persona Hub, section 4.1), with the paper's two controls,
topic and difficulty. ``--with-solution`` adds a second step that solves the problem, so the row
keeps the problem as its ``synthesized text`` and the worked solution and final answer apart."""

from __future__ import annotations

import functools
from typing import Literal

from pydantic import Field

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, answer_text, demonstrations, few_shot_block, reject_copies,
                                       reject_near_copies, require_problem, synthesis_prompt)
from personahub_core.tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer, WorkItem

LEVELS = {
    "grade school": "solvable with arithmetic, fractions and percentages",
    "high school": "needs high-school algebra, geometry, probability or functions",
    "competition": "a contest problem that needs a clever idea, not just a formula",
    "olympiad": "an olympiad problem that needs deep insight and a rigorous argument",
}


class Options(SynthesisOptions):
    topic: str = Field("any", description="area of mathematics in free text, e.g. geometry, probability, finance; "
                                         "'any' lets the persona decide")
    difficulty: Literal["any", "grade school", "high school", "competition", "olympiad"] = Field(
        "any", description="level of the problem")
    with_solution: bool = Field(False, description="also solve each problem and store solution and final_answer")


class MathProblems(Synthesizer):
    name = "math"
    description = "math problems written for each persona (topic and difficulty controls, optional solutions)"
    row_description = "math problem"
    template = "math-problem"
    template_version = "1"
    Options = Options

    def record(self, persona: str | None, topic: str, difficulty: str) -> str:
        """The head of one problem record: the persona and the controls that are set."""
        lines = [f"Persona: {persona}"] if persona else []
        if self.options.topic != "any":
            lines.append(f"Topic: {topic}")
        if self.options.difficulty != "any":
            lines.append(f"Difficulty: {difficulty}")
        return "\n".join(lines + ["Problem:"])

    @functools.cached_property
    def shots(self) -> str:
        """The demonstrations as every problem prompt shows them (the options are fixed: built once)."""
        return few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, with_persona:
                f"{self.record(d['persona'] if with_persona else None, d['topic'], d['difficulty'])} {d['problem']}",
        )

    def prompt(self, persona: str) -> Prompt:
        o = self.options
        wanted = [f"about {o.topic}" if o.topic != "any" else "",
                  f"at {o.difficulty} level ({LEVELS[o.difficulty]})" if o.difficulty != "any" else ""]
        return synthesis_prompt(
            header="Each persona below is followed by a math problem written for that person. The problem draws on "
                   "the person's work or interests, gives every number it needs, and does not include the solution.",
            examples=self.shots,
            query=self.record(persona, o.topic, o.difficulty),
            request=f"Create a math problem {' '.join(w for w in wanted if w)} related to the following persona:\n\n"
                    f"{persona}\n\nUse the persona's work or interests so the problem is specific to them. Give every "
                    "number needed, ask at most two sub-questions, and do not solve it. Start with \"Problem:\".",
            max_tokens=160,
            stop=["\n\n", "\nPersona:", "\nTopic:", "\nDifficulty:", "\nProblem:", "\nSolution:"],
        )

    def solve_prompt(self, problem: str) -> Prompt:
        shots = few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, _: f"Problem: {d['problem']}\nSolution: {d['solution']}\nFinal answer: {d['final_answer']}",
        )
        return synthesis_prompt(
            header="Each math problem below is followed by a short worked solution and the final answer.",
            examples=shots,
            query=f"Problem: {problem}\nSolution:",
            request=f"Solve this math problem step by step. End with a line \"Final answer: ...\".\n\nProblem: {problem}",
            max_tokens=256,
            stop=["\n\n", "\nProblem:"],
            temperature=0.2,  # solving wants the likeliest reasoning, not variety
        )

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        problem = answer_text(completion, label="Problem", min_words=8, max_words=160)
        demos = [d["problem"] for d in demonstrations(__name__)]
        reject_copies(problem, persona=persona, demos=demos)
        reject_near_copies(problem, demos)
        require_problem(problem)
        return Synthesis(problem)

    def run_item(self, item: WorkItem):
        """Pose the problem (the one-step path), then with ``--with-solution`` solve it too."""
        synthesis = yield from super().run_item(item)
        if self.options.with_solution:
            solution, final = parse_solution((yield self.solve_prompt(synthesis.text)))
            synthesis.fields.update(solution=solution, final_answer=final)
        return synthesis


def parse_solution(completion: Completion) -> tuple[str, str]:
    """Split a worked solution from its "Final answer:" line; whatever follows that line is dropped
    (a base model tends to keep repeating it until the token limit)."""
    head, marker, tail = completion.text.partition("Final answer:")
    if not marker:
        answer_text(completion, min_words=3)  # a better reason (runaway, empty...) when there is one
        raise Rejected("solution has no 'Final answer:' line")
    final = tail.strip().split("\n", 1)[0].strip() if tail.strip() else ""
    solution = answer_text(Completion(head), label="Solution", min_words=3)
    if not final:
        raise Rejected("empty final answer")
    return solution, final


@hookimpl
def register_tasks(register):
    register(MathProblems)
