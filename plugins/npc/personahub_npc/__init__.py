"""Game NPCs (Persona Hub, section 4.5): given a game world, which non-player character would this
persona become there? The NPC is decoded under a JSON schema (name, role, background, personality,
and how it interacts with players) and validated; ``synthesized text`` renders it the way
PersonaHub's released NPC rows read, starting with "Name:".

``--world`` takes a bundled world's name (``ember-reach``, the default, or ``halcyon-drift``) or a
markdown / YAML file describing your own game.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, demonstrations, few_shot_block, persona_line, reject_copies,
                                       repeats_itself, structured_answer, synthesis_prompt)
from personahub_core.tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer

from .world import World, WorldError, load_world

# Each field's description and length bound (maxLength keeps a rambling base model inside the token budget).
FIELDS = {
    "name": "the NPC's name",
    "role": "what the NPC does in the world, and where",
    "background": "the NPC's history, tied to the world's places and factions",
    "personality": "how the NPC thinks and behaves",
    "interaction": "how the NPC interacts with players: quests, trades, information, favours",
}
LENGTHS = {"name": 40, "role": 100, "background": 400, "personality": 160, "interaction": 300}
SCHEMA = {
    "type": "object",
    "properties": {key: {"type": "string", "description": text, "maxLength": LENGTHS[key]} for key, text in FIELDS.items()},
    "required": list(FIELDS),
    "additionalProperties": False,
}
LABELS = {"name": "Name", "role": "Role", "background": "Background", "personality": "Personality",
          "interaction": "Interaction with players"}


class NPC(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=2, max_length=80)
    role: str = Field(min_length=3, max_length=300)
    background: str = Field(min_length=15, max_length=2000)
    personality: str = Field(min_length=5, max_length=1000)
    interaction: str = Field(min_length=15, max_length=1500)

    def render(self) -> str:
        return "\n".join(f"{LABELS[key]}: {value}" for key, value in self.model_dump().items())


class Options(SynthesisOptions):
    world: str = Field("ember-reach", description="game world: a bundled name (ember-reach, halcyon-drift) or a .md / .yaml file")

    @field_validator("world")
    @classmethod
    def world_loads(cls, value: str) -> str:
        try:
            load_world(value)
        except WorldError as exc:
            raise PydanticCustomError("world_file", "{problem}", {"problem": str(exc)}) from None
        return value


class GameNPCs(Synthesizer):
    name = "npc"
    description = "game NPCs made from each persona for a game world (--world)"
    row_description = "npc"
    template = "npc"
    template_version = "1"
    Options = Options

    def __init__(self, options: BaseModel | None = None):
        super().__init__(options)
        self.world: World = load_world(self.options.world)
        self.demos = self.demos_for(self.world)
        self.demo_worlds = {d["world"]: load_world(d["world"]).name for d in self.demos}

    def item_key(self, ctx, *parts) -> str:
        # The world's text, not just its path, decides the output: an edited world is new work.
        return super().item_key(ctx, self.world.digest, *parts)

    @staticmethod
    def demos_for(world: World) -> list[dict]:
        """Demonstrations from this world when there are some, else from every bundled world."""
        own = [d for d in demonstrations(__name__) if d["world"] == world.slug]
        return own or demonstrations(__name__)

    def prompt(self, persona: str) -> Prompt:
        shots = few_shot_block(
            self.demos, self.options.mode,
            lambda d, with_persona: f"World: {self.demo_worlds[d['world']]}\n"
                                    + persona_line(d, with_persona)
                                    + f"NPC: {json.dumps(d['npc'], ensure_ascii=False)}",
        )
        keys = "; ".join(f"{key}: {text}" for key, text in FIELDS.items())
        return synthesis_prompt(
            context=self.world.text,
            header="Below, each persona is imagined as a non-player character (NPC) in a game world. The NPC belongs "
                   "to that world, uses its places and factions, and keeps something of the persona's skills and "
                   "temperament.",
            examples=shots,
            query=f"World: {self.world.name}\nPersona: {persona}\nNPC:",
            request=f"Above is the game world \"{self.world.name}\". Consider what NPC the following persona would "
                    f"become in this world:\n\n{persona}\n\nThe NPC must be specific and consistent with the world, and "
                    f"say how it interacts with players. Reply with a JSON object with these keys: {keys}.",
            max_tokens=400,  # above the schema's worst case, so the grammar always closes the JSON
            json_schema=SCHEMA,  # no stop string: strings may hold blank lines, and the grammar ends the answer
        )

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        npc = parse_npc(completion)
        reject_copies(npc.background, persona=persona, demos=[d["npc"]["background"] for d in demonstrations(__name__)])
        return Synthesis(npc.render(), fields={"npc": npc.model_dump(), "world": self.world.name})


def parse_npc(completion: Completion) -> NPC:
    try:
        npc = NPC.model_validate(structured_answer(completion, SCHEMA))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "NPC"
        raise Rejected(f"invalid NPC JSON: {where}: {err['msg']}") from None
    if repeats_itself("\n".join(npc.model_dump().values())):
        raise Rejected("repeats itself")
    return npc


@hookimpl
def register_tasks(register):
    register(GameNPCs)
