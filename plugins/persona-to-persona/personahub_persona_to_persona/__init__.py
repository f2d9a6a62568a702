"""Persona-to-Persona (Persona Hub, section 2.2): "who is in a close relationship with this persona?"
The first hop expands the selected personas (``--where``; by default the starting ones, hop 0), and
each later hop only the personas the hop before made from them; six hops by default, after the six
degrees of separation."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from personahub_core.hookspecs import hookimpl
from personahub_core.persona_text import clean_persona
from personahub_core.prompting import demonstrations
from personahub_core.where import filtered_fields
from personahub_core.tasks import NewPersona, PersonaExpander, Prompt, Rejected, WorkItem, work_key

RELATIONS = ["family", "colleague", "client", "patient", "supplier", "competitor", "mentor", "student",
             "neighbour", "friend"]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hops: int = Field(6, ge=1, le=20, description="how many steps away from the starting personas")
    relations: list[str] = Field(RELATIONS, description="relations to draw from, comma separated")
    per_persona: int = Field(1, ge=1, le=len(RELATIONS), description="related personas made from each persona per hop")
    max_personas: int | None = Field(None, ge=1, description="stop after this many new personas in all")


class PersonaToPersona(PersonaExpander):
    name = "persona-to-persona"
    description = "personas from personas: who is in a close relationship with this one?"
    template = "persona-to-persona"
    template_version = "1"
    Options = Options

    def relations_for(self, persona_id: str) -> list[str]:
        """A fixed, evenly spread choice of relations per persona, so reruns ask the same questions."""
        ranked = sorted(self.options.relations, key=lambda r: work_key(persona_id, r))
        return ranked[: self.options.per_persona]

    def parents_for_hop(self, ctx, hop: int, expanded: pa.Array | None = None) -> pa.Table:
        """The personas hop ``hop`` expands. The first: those ``--where`` selects, at hop 0 unless the
        filter names a hop. A later one: the personas made from ``expanded``, the hop before's parents."""
        columns = ("id", "persona", "hop", "parent_id")
        if hop == 1:
            where = ctx.where if "hop" in filtered_fields(ctx.where) else ["hop=0", *ctx.where]
            return ctx.store.select_personas(where=where, columns=columns)
        made = ctx.store.select_personas(where=[f"hop>={hop - 1}"], columns=columns)
        return made.filter(pc.is_in(made["parent_id"], value_set=expanded))

    def items_for_hop(self, ctx, hop: int, parents: pa.Table | None = None):
        parents = self.parents_for_hop(ctx, hop) if parents is None else parents
        for parent in parents.to_pylist():
            for relation in self.relations_for(parent["id"]):
                yield WorkItem(
                    key=self.item_key(ctx, parent["id"], relation, ctx.settings.seed),
                    input_id=parent["id"],
                    data={"persona": parent["persona"], "relation": relation, "parent_id": parent["id"],
                          "hop": parent["hop"] + 1},
                )

    planned_note = "first hop only: later hops expand the personas it makes"

    def planned_items(self, ctx):
        return self.items_for_hop(ctx, 1)

    def run(self, ctx) -> None:
        budget = ctx.limit  # the hops share one budget: --limit, and --max-personas
        if self.options.max_personas is not None:
            budget = self.options.max_personas if budget is None else min(budget, self.options.max_personas)
        parents = None
        for hop in range(1, self.options.hops + 1):
            if budget is not None and budget <= 0:
                ctx.note(f"stopped before hop {hop}: budget used")
                break
            parents = self.parents_for_hop(ctx, hop, None if parents is None else parents["id"])
            budget = ctx.run_generative(self, self.items_for_hop(ctx, hop, parents), label=f"hop {hop}/{self.options.hops}",
                                        budget=budget)

    def prompt(self, persona: str, relation: str) -> Prompt:
        shots = "".join(
            f"Persona: {d['persona']}\nRelation: {d['relation']}\nRelated persona: {d['related_persona']}\n\n"
            for d in demonstrations(__name__)
        )
        instruction = "For each persona, describe in one sentence a person who is in a close relationship with them."
        return Prompt(
            completion=f"{instruction}\n\n{shots}Persona: {persona}\nRelation: {relation}\nRelated persona: A",
            chat=[{"role": "user", "content": f"Persona: {persona}\n\nWho is in a close relationship with this persona "
                                              f"as their {relation}? Describe that person in one sentence starting with 'A' or 'An'."}],
            max_tokens=64,
            stop=["\n"],
        )

    def run_item(self, item: WorkItem):
        completion = yield self.prompt(item.data["persona"], item.data["relation"])
        related = clean_persona(completion.text, continues="A")
        if related.lower() == item.data["persona"].lower():
            raise Rejected("repeats the parent persona")
        return [NewPersona(related, relation=item.data["relation"])]


@hookimpl
def register_tasks(register):
    register(PersonaToPersona)
