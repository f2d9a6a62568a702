"""A complete third-party synthesizer: a three-line haiku each persona might write about their day.

This is the example of docs/plugins/writing-plugins.md; the test suite installs and runs it.
"""

from pydantic import BaseModel, ConfigDict, Field

from personahub_core.hookspecs import hookimpl
from personahub_core.tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer

# Few-shot demonstrations for base models (no chat template): persona, then its haiku.
DEMOS = [
    ("A night-shift baker who opens the shop before dawn.",
     "Flour on the dark sill / the oven hums its warm song / first bus lights the glass"),
    ("A marine biologist counting seagrass along a cold estuary.",
     "Knee-deep in the tide / green ribbons lean toward the sea / my clipboard is wet"),
]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    season: str = Field("any", description="season the haiku should evoke")


class Haiku(Synthesizer):
    name = "haiku"
    description = "a haiku the persona would write"
    template = "haiku"
    template_version = "1"
    row_description = "haiku"
    Options = Options

    def prompt(self, persona: str) -> Prompt:
        season = "" if self.options.season == "any" else f" Season: {self.options.season}."
        shots = "".join(f"Persona: {p}\nHaiku: {h}\n\n" for p, h in DEMOS)
        return Prompt(
            completion=f"Each persona writes a haiku about their day, lines separated by ' / '.{season}\n\n"
                       f"{shots}Persona: {persona}\nHaiku:",
            chat=[{"role": "user", "content": f"Write a haiku that this person might write about their day.{season}\n"
                                              f"Persona: {persona}\nSeparate the three lines with ' / '."}],
            max_tokens=40,
            stop=["\n"],
        )

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        if completion.finish_reason == "length":  # the model never reached the end of its line
            raise Rejected("cut off at the token limit")
        lines = [line.strip() for line in completion.text.replace("\n", " / ").split(" / ") if line.strip()]
        if len(lines) < 2:
            raise Rejected(f"expected three lines, got {len(lines)}")
        return Synthesis(text="\n".join(lines[:3]), fields={"lines": lines[:3], "season": self.options.season})


@hookimpl
def register_tasks(register):
    register(Haiku)
