"""Text-to-Persona (Persona Hub, section 2.1): for each text, ask who is likely to read / write /
like / dislike it, and keep the person the model describes. The persona's granularity follows
the text's detail; ``--granularity fine`` asks for more specific personas."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from personahub_core.errors import UsageError
from personahub_core.hookspecs import hookimpl
from personahub_core.persona_text import clean_persona
from personahub_core.prompting import demonstrations
from personahub_core.tasks import GenerativeTask, NewPersona, PersonaSource, Prompt, WorkItem

Perspective = Literal["read", "write", "like", "dislike"]
GRANULARITY = {
    "coarse": "Describe the person in general terms: a role and a broad interest.",
    "fine": "Describe a specific person: their role, expertise, situation and interests.",
}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    perspectives: list[Perspective] = Field(["read", "write"], description="who to ask about, comma separated")
    granularity: Literal["coarse", "fine"] = Field("fine", description="how specific the personas are")
    max_chars: int = Field(1200, ge=100, description="longer texts are cut to this many characters")


class TextToPersona(PersonaSource, GenerativeTask):
    name = "text-to-persona"
    description = "personas from texts: who would read / write / like / dislike this?"
    template = "text-to-persona"
    template_version = "1"
    Options = Options
    # The main job's first step on a store without personas; one persona per text (its writer) keeps
    # the main job under ten minutes on two cores.
    bootstrap_step = 1
    bootstrap_options = {"perspectives": ["write"]}

    def work_items(self, ctx):
        if not ctx.store.document_count():
            raise UsageError(f"{ctx.settings.db} has no documents to read: add texts first (personahub ingest FILE ...)")
        for doc in ctx.store.select_documents(("id", "text")).to_pylist():
            for perspective in dict.fromkeys(self.options.perspectives):
                yield WorkItem(
                    key=self.item_key(ctx, doc["id"], perspective, ctx.settings.seed),
                    input_id=doc["id"],
                    data={"text": doc["text"], "perspective": perspective, "source_id": doc["id"], "hop": 0},
                )

    def prompt(self, text: str, perspective: str) -> Prompt:
        question = f"Who is likely to {perspective} this text?"
        shots = "".join(
            f"Text: {d['text']}\nWho is likely to {d['perspective']} this text? {d['persona']}\n\n"
            for d in demonstrations(__name__)
        )
        instruction = "Each text is followed by a one-sentence description of a person. " + GRANULARITY[self.options.granularity]
        return Prompt(
            completion=f"{instruction}\n\n{shots}Text: {text}\n{question} A",
            chat=[{"role": "user", "content": f"{text}\n\n{question} {GRANULARITY[self.options.granularity]} "
                                              "Answer with one sentence that starts with 'A' or 'An'."}],
            max_tokens=64,
            stop=["\n"],
        )

    def run_item(self, item: WorkItem):
        text = item.data["text"]
        note = None
        if len(text) > self.options.max_chars:
            text = text[: self.options.max_chars].rsplit(" ", 1)[0] + " ..."
            note = f"source text truncated from {len(item.data['text'])} to {self.options.max_chars} characters"
        completion = yield self.prompt(text, item.data["perspective"])
        return [NewPersona(clean_persona(completion.text, continues="A"), perspective=item.data["perspective"], note=note)]


@hookimpl
def register_tasks(register):
    register(TextToPersona)
