"""Tools (Persona Hub, section 4.6): the interface of a tool (function) this persona would need, in
PersonaHub's released form: ``name``, ``description``, ``function_name``, ``input_args`` (argument
name -> {type, description}), ``return`` ({type, description}) and ``depend`` (libraries or APIs it
needs). The interface is decoded under a JSON schema and validated; ``synthesized text`` is its JSON.
A description that does not end a sentence was cut off (the model closed the string mid-thought, or the
grammar's length limit did): it is cut back to its last full sentence, since what precedes the cut is a
finished description and rejecting it would cost a retry for nothing; with no full sentence it is
rejected. No row says "This interface is the same as the".

Exports write the released encoding (``released_text``): there ``synthesized text`` is a JSON string
holding the tool's JSON (a reader decodes it twice), and ``input_args`` values, ``return`` and
``depend`` are strings ("number - Average gain in kg", "requests, Open-Meteo API"). The row in the
store and ``--full``'s ``output.tool`` keep the typed form.

The model writes ``input_args`` as a list of {name, type, description} (``as_written``): a JSON
schema cannot bound how many keys an object has, and a small model left free keeps adding
arguments until the token limit; a list takes ``maxItems``. The row stores the released form.

``--implement`` adds a second step that writes Python code for the interface and stores it in the
``implementation`` field. That code comes from a language model: PersonaHub never executes it, and
never compiles or imports it either; the only check is textual (it defines the named function).
"""

from __future__ import annotations

import json
import keyword
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personahub_core.hookspecs import hookimpl
from personahub_core.prompting import (SynthesisOptions, demonstrations, few_shot_block, persona_line, reject_copies,
                                       repeats_itself, structured_answer, synthesis_prompt, whole_sentences)
from personahub_core.tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer, WorkItem

TYPES = ["string", "integer", "number", "boolean", "array", "object"]
KEYS = ["name", "description", "function_name", "input_args", "return", "depend"]
# maxLength bounds each string, so a base model that starts rambling still closes the JSON in time;
# minLength and the identifier patterns let the grammar, not a later rejection, enforce what Tool checks.
TYPED = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": TYPES}, "description": {"type": "string", "minLength": 3, "maxLength": 100}},
    "required": ["type", "description"],
    "additionalProperties": False,
}
ARG = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}$"}, **TYPED["properties"]},
    "required": ["name", "type", "description"],
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 60},
        "description": {"type": "string", "minLength": 10, "maxLength": 240},
        "function_name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,47}$"},
        "input_args": {"type": "array", "items": ARG, "maxItems": 4},
        "return": TYPED,
        "depend": {"type": "array", "items": {"type": "string", "maxLength": 48}, "maxItems": 4},
    },
    "required": KEYS,
    "additionalProperties": False,
}


def as_written(tool: dict) -> dict:
    """The released form as the model writes it: input_args as a list."""
    return {**tool, "input_args": [{"name": name, **arg} for name, arg in tool["input_args"].items()]}


def as_released(written: object) -> object:
    """The model's answer in PersonaHub's released form: input_args as name -> {type, description}."""
    args = written.get("input_args") if isinstance(written, dict) else None
    if not isinstance(args, list):
        return written
    released = {}
    for arg in args:
        name = arg.pop("name", None) if isinstance(arg, dict) else None
        if name in released:
            raise Rejected(f"argument '{name}' given twice")
        released[name] = arg
    return {**written, "input_args": released}


def identifier(value: str) -> str:
    """A Python name from what the model wrote ("Get Weather" -> "get_weather"), or ValueError."""
    name = re.sub(r"\W+", "_", value.strip()).strip("_").lower()
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{value!r} is not a usable Python name")
    return name


class Typed(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    type: Literal["string", "integer", "number", "boolean", "array", "object"]
    description: str = Field(min_length=3)


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)
    name: str = Field(min_length=3, max_length=120)
    description: str = Field(min_length=10, max_length=1500)
    function_name: str
    input_args: dict[str, Typed] = Field(max_length=12)
    returns: Typed = Field(alias="return")
    depend: list[str] = Field(max_length=6)

    @field_validator("function_name")
    @classmethod
    def _function_name(cls, value: str) -> str:
        return identifier(value)

    @field_validator("input_args")
    @classmethod
    def _arg_names(cls, value: dict[str, Typed]) -> dict[str, Typed]:
        return {identifier(name): arg for name, arg in value.items()}

    @field_validator("depend")
    @classmethod
    def _depend(cls, value: list[str]) -> list[str]:
        return [d.strip() for d in value if d.strip()]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), ensure_ascii=False)


def released(tool: dict) -> dict:
    """The typed tool in the shape of PersonaHub's released rows: argument, return and depend as strings."""
    return {
        "name": tool["name"],
        "description": tool["description"],
        "function_name": tool["function_name"],
        "input_args": {name: f"{arg['type']} - {arg['description']}" for name, arg in tool["input_args"].items()},
        "return": f"{tool['return']['type']} - {tool['return']['description']}",
        "depend": ", ".join(tool["depend"]),
    }


class Options(SynthesisOptions):
    implement: bool = Field(False, description="also write Python code for each tool (stored, never executed)")


class ToolInterfaces(Synthesizer):
    name = "tools"
    description = "tool (function) interfaces each persona would need, optionally implemented in Python"
    row_description = "tool development"
    template = "tool-interface"
    template_version = "1"
    Options = Options

    def prompt(self, persona: str) -> Prompt:
        shots = few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, with_persona: persona_line(d, with_persona)
                                    + f"Tool: {json.dumps(as_written(d['tool']), ensure_ascii=False)}",
        )
        return synthesis_prompt(
            header="Each persona below is followed by the interface of a software tool that person would find useful "
                   "in their work or hobby: a single function that an AI assistant could call, with typed arguments.",
            examples=shots,
            query=f"Persona: {persona}\nTool:",
            request=f"Design a tool (a single function an AI assistant could call) that the following persona would "
                    f"find useful:\n\n{persona}\n\nReply with a JSON object with the keys name, description, "
                    "function_name, input_args (a list of {name, type, description}), return ({type, description}) "
                    "and depend (a list of the libraries or APIs it needs).",
            max_tokens=512,  # above the schema's worst case, so the grammar always closes the JSON
            json_schema=SCHEMA,  # no stop string: strings may hold blank lines, and the grammar ends the answer
        )

    def implement_prompt(self, tool: Tool) -> Prompt:
        # The code depends on the interface only, so no mode shows personas here.
        shots = few_shot_block(
            demonstrations(__name__), self.options.mode,
            lambda d, _: f"Tool: {json.dumps(d['tool'], ensure_ascii=False)}\nImplementation:\n```python\n{d['implementation']}\n```",
        )
        return synthesis_prompt(
            header="Each tool interface below is followed by a Python implementation. The code defines the function "
                   "named in the interface with the listed arguments and uses only the listed dependencies.",
            examples=shots,
            query=f"Tool: {tool.to_json()}\nImplementation:\n```python\n",
            request=f"Implement this tool interface as a Python function named {tool.function_name}:\n\n"
                    f"{tool.to_json()}\n\nReply with one ```python code block.",
            max_tokens=400,
            stop=["```"],
            temperature=0.2,  # code wants the likeliest tokens
        )

    @classmethod
    def released_text(cls, text: str) -> str:
        """The stored tool JSON as the release encodes it: a JSON string holding the released tool's JSON."""
        return json.dumps(json.dumps(released(json.loads(text)), ensure_ascii=False), ensure_ascii=False)

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        tool = parse_tool(completion)
        reject_copies(tool.description, persona=persona,
                      demos=[d["tool"]["description"] for d in demonstrations(__name__)])
        return Synthesis(tool.to_json(), fields={"tool": tool.model_dump(by_alias=True)})

    def run_item(self, item: WorkItem):
        """Design the interface (the one-step path), then with ``--implement`` write its code."""
        synthesis = yield from super().run_item(item)
        if self.options.implement:
            tool = Tool.model_validate(synthesis.fields["tool"])
            synthesis.fields["implementation"] = parse_code((yield self.implement_prompt(tool)), tool.function_name)
        return synthesis


def parse_tool(completion: Completion) -> Tool:
    try:
        tool = Tool.model_validate(as_released(structured_answer(completion, SCHEMA)))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "tool"
        raise Rejected(f"invalid tool JSON: {where}: {err['msg']}") from None
    tool = tool.model_copy(update={"description": whole_sentences(tool.description, "description cut off mid-sentence")})
    texts = [tool.description, tool.returns.description, *(a.description for a in tool.input_args.values())]
    if repeats_itself("\n".join(texts)):
        raise Rejected("repeats itself")
    return tool


def parse_code(completion: Completion, function_name: str) -> str:
    """The code as text. Deliberately not compiled or run: a textual check for the function is all."""
    if completion.finish_reason == "length":
        raise Rejected("runaway answer: the implementation was cut off at the token limit")
    code = completion.text
    if "```" in code:  # a chat model's fenced block
        code = re.sub(r"^.*?```(?:python)?\n", "", code, count=1, flags=re.S).split("```", 1)[0]
    code = code.strip("\n").rstrip()
    if not re.search(rf"^def {re.escape(function_name)}\s*\(", code, flags=re.M):
        raise Rejected(f"implementation does not define {function_name}()")
    return code


@hookimpl
def register_tasks(register):
    register(ToolInterfaces)
