"""Reasoning problems written for a persona (Persona Hub, section 4.1). ``--style`` picks the kind:
logical deduction, spatial reasoning, or trick questions in the spirit of the paper's Ruozhiba
examples, whose answer turns on noticing a catch in the wording rather than on calculation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, answer_text, demonstrations, few_shot_block, persona_line,
                                       reject_copies, reject_near_copies, require_problem,
                                       synthesis_prompt)
from personahub_core.tasks import Completion, Prompt, Synthesis, Synthesizer

STYLES = {
    "logical": "a logic puzzle: a few people or things, clues that constrain them, and one answer that follows "
               "from the clues by deduction alone",
    "spatial": "a spatial reasoning problem about positions, directions, folding, stacking or shapes, solved by "
               "picturing the scene rather than by calculation",
    "trick": "a trick question that sounds like an ordinary sum or fact question, but whose wording hides a catch "
             "(an impossible premise, a detail that makes the numbers irrelevant, or a double meaning); the answer "
             "comes from noticing the catch",
}


class Options(SynthesisOptions):
    style: Literal["logical", "spatial", "trick"] = Field("logical", description="logical | spatial | trick")


class ReasoningProblems(Synthesizer):
    name = "reasoning"
    description = "logical, spatial or trick reasoning problems written for each persona"
    row_description = "logical reasoning problem"
    template = "reasoning-problem"
    template_version = "1"
    Options = Options

    def demos(self) -> list[dict]:
        return [d for d in demonstrations(__name__) if d["style"] == self.options.style]

    def prompt(self, persona: str) -> Prompt:
        definition = STYLES[self.options.style]
        shots = few_shot_block(
            self.demos(), self.options.mode,
            lambda d, with_persona: persona_line(d, with_persona) + f"Puzzle: {d['problem']}",
        )
        return synthesis_prompt(
            header=f"Each persona below is followed by a puzzle written for that person: {definition}. "
                   "The puzzle is set in the person's world and does not give the answer.",
            examples=shots,
            query=f"Persona: {persona}\nPuzzle:",
            request=f"Create {definition}. Set it in the world of the following persona:\n\n{persona}\n\n"
                    "Give every fact needed to solve it, do not give the answer, and start with \"Puzzle:\".",
            max_tokens=160,
            stop=["\n\n", "\nPersona:", "\nPuzzle:", "\nAnswer:"],
        )

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        problem = answer_text(completion, label="Puzzle", min_words=8, max_words=160)
        demos = [d["problem"] for d in demonstrations(__name__)]
        reject_copies(problem, persona=persona, demos=demos)
        reject_near_copies(problem, demos)
        require_problem(problem, quantity=False)
        return Synthesis(problem, fields={"style": self.options.style})


@hookimpl
def register_tasks(register):
    register(ReasoningProblems)
