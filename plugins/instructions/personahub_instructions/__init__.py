"""Instructions (Persona Hub, section 4.2): the prompts a persona would ask an AI assistant.

``--turns N`` with N > 1 turns each prompt into a conversation: the model answers as the assistant,
then writes the persona's next message, until the persona has spoken N times and every message has
its answer (2N messages). With the default of 1 the row holds the user prompt alone, as PersonaHub
released it. Either way ``synthesized text`` is the first user prompt and ``messages`` the dialogue.
"""

from __future__ import annotations

from pydantic import Field

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, answer_text, demonstrations, few_shot_block, persona_line,
                                       reject_copies, synthesis_prompt)
from personahub_core.tasks import Completion, Prompt, Synthesis, Synthesizer, WorkItem

SPEAKER = {"user": "User", "assistant": "Assistant"}
HEADER = ("Below, different people ask an AI assistant for help. Each person's messages are specific and informative, "
          "the kind of request that person would really make, and the assistant answers helpfully and concisely.")
STOP = ["\n\n", "\nPersona:", "\nUser:", "\nAssistant:"]


class Options(SynthesisOptions):
    turns: int = Field(1, ge=1, le=8, description="user turns; above 1 the model also answers each one (2N messages)")


def transcript(messages: list[dict]) -> str:
    return "".join(f"{SPEAKER[m['role']]}: {m['content']}\n" for m in messages)


class Instructions(Synthesizer):
    name = "instructions"
    description = "prompts each persona would ask an AI assistant, optionally as multi-turn conversations"
    row_description = "user prompt"
    template = "instructions"
    template_version = "1"
    Options = Options

    def shots(self) -> str:
        return few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, with_persona: persona_line(d, with_persona) + transcript(d["conversation"]),
        )

    def user_prompt(self, persona: str, messages: list[dict]) -> Prompt:
        """The persona's next message: the first prompt, or a follow-up to the assistant's answer."""
        if not messages:
            request = (f"Guess a prompt that the following persona might ask an AI assistant:\n\n{persona}\n\n"
                       "Make it specific and informative. Reply with the prompt only.")
        else:
            request = (f"You are this person: {persona}\n\nHere is your conversation with an AI assistant so far:\n\n"
                       f"{transcript(messages)}\nWrite your next message to the assistant, a natural follow-up. "
                       "Reply with the message only.")
        return synthesis_prompt(header=HEADER, examples=self.shots(),
                                query=f"Persona: {persona}\n{transcript(messages)}User:",
                                request=request, max_tokens=96, stop=STOP)

    def answer_prompt(self, persona: str, messages: list[dict]) -> Prompt:
        """The assistant's answer; an instruction-tuned model simply continues the conversation."""
        return Prompt(completion=f"{HEADER}\n\n{self.shots()}Persona: {persona}\n{transcript(messages)}Assistant:",
                      chat=list(messages), max_tokens=200, stop=STOP)

    def prompt(self, persona: str) -> Prompt:
        return self.user_prompt(persona, [])

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        """The persona's first prompt: the whole row with the default single turn."""
        asked = user_message(completion, persona, min_words=5)
        return Synthesis(asked, fields={"messages": [{"role": "user", "content": asked}]})

    def run_item(self, item: WorkItem):
        """The first prompt (the one-step path); with ``--turns`` above 1, then answer and follow-up in turn."""
        synthesis = yield from super().run_item(item)
        if self.options.turns == 1:
            return synthesis
        persona, messages = item.data["persona"], synthesis.fields["messages"]
        while True:
            answer = answer_text((yield self.answer_prompt(persona, messages)), min_words=2, max_words=250)
            messages.append({"role": "assistant", "content": answer})
            if len(messages) == 2 * self.options.turns:
                return synthesis
            asked = user_message((yield self.user_prompt(persona, messages)), persona, min_words=2)
            messages.append({"role": "user", "content": asked})


def user_message(completion: Completion, persona: str, min_words: int) -> str:
    """A message the persona writes to the assistant, or Rejected (as a copy of a demonstration's, too)."""
    asked = answer_text(completion, label="User prompt", min_words=min_words, max_words=200)
    demo_prompts = [m["content"] for d in demonstrations(__name__) for m in d["conversation"] if m["role"] == "user"]
    reject_copies(asked, persona=persona, demos=demo_prompts)
    return asked


@hookimpl
def register_tasks(register):
    register(Instructions)
