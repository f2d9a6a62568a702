"""Knowledge-rich texts (Persona Hub, section 4.3): an informative Quora-style article written as the
persona, drawing on their knowledge and experience. The row keeps ``title`` and ``body`` apart;
``synthesized text`` is the title, a blank line, and the body. An article cut off at the token limit
keeps its finished paragraphs (and ``truncated: true``) when what remains is still long enough."""

from __future__ import annotations

from pydantic import Field

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, answer_text, demonstrations, few_shot_block, persona_line,
                                       reject_copies, synthesis_prompt)
from personahub_core.tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer


class Options(SynthesisOptions):
    min_words: int = Field(60, ge=10, le=1000, description="shortest article body kept, in words")


def article(title: str, body: str) -> str:
    """The completion form of an article: one line per paragraph, so a blank line ends the record."""
    paragraphs = [p.strip() for p in body.split("\n") if p.strip()]
    return f"Title: {title}\nArticle: " + "\n".join(paragraphs)


class KnowledgeArticles(Synthesizer):
    name = "knowledge"
    description = "informative Quora-style articles written as each persona"
    row_description = "knowledge-rich text"
    template = "knowledge-article"
    template_version = "1"
    Options = Options

    def prompt(self, persona: str) -> Prompt:
        shots = few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, with_persona: persona_line(d, with_persona) + article(d["title"], d["body"]),
        )
        return synthesis_prompt(
            header="Each article below was written for a question-and-answer site by the person described above it. "
                   "The writer shares specific, practical knowledge from their own work and experience.",
            examples=shots,
            query=f"Persona: {persona}\nTitle:",
            request=f"{persona}\n\nYou are the person described above. Write an article for a question-and-answer site "
                    "like Quora that uses your knowledge, skills and experience to teach readers something useful. Be "
                    "specific and informative. Start with \"Title:\" on its own line, then \"Article:\" and the text.",
            max_tokens=320,
            stop=["\n\n", "\nPersona:", "\nTitle:"],
        )

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        fields: dict = {}
        if completion.finish_reason == "length" and "\n" in completion.text.strip():
            # Base models seldom end an article on their own: keep its finished paragraphs.
            completion = Completion(completion.text.strip().rsplit("\n", 1)[0])
            fields["truncated"] = True
        text = answer_text(completion, label="Title", min_words=5, max_words=700)
        title, _, rest = text.partition("\n")
        title = title.strip().strip("*#").strip()
        body = "\n\n".join(p.strip() for p in rest.strip().removeprefix("Article:").split("\n") if p.strip())
        if not 2 <= len(title.split()) <= 25:
            raise Rejected(f"title has {len(title.split())} words (expected 2 to 25)")
        if len(body.split()) < self.options.min_words:
            raise Rejected(f"article body too short ({len(body.split())} words, at least {self.options.min_words})")
        reject_copies(body, persona=persona, demos=[d["body"] for d in demonstrations(__name__)])
        return Synthesis(f"{title}\n\n{body}", fields={"title": title, "body": body, **fields})


@hookimpl
def register_tasks(register):
    register(KnowledgeArticles)
