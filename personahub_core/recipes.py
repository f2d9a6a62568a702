"""Recipes: a synthesizer written as a TOML file instead of a plugin.

    name = "limerick"                       # the task's name: rows, resume and export go by it
    description = "a limerick about the persona's working day"
    prompt = "Write a limerick about {subject} as this person would tell it: {persona}"
    examples = "limerick.jsonl"             # optional: {"persona": ..., "output": ...} per line
    mode = "persona-few-shot"               # optional default for --mode
    max_tokens = 120                        # optional
    temperature = 0.9                       # optional (default: the run's)
    stop = ["\\n\\n\\n"]                       # optional, added to the stops the recipe always has
    input = "rows"                          # optional: judge another task's rows instead (see below)
    [options]                               # optional: each becomes --NAME and a {NAME} placeholder
    subject = { default = "their working day", help = "what the limerick is about" }
    [schema]                                # optional JSON schema: decoded under a grammar, validated after

The prompt is the chat form. The completion form (for base models without a chat template) shows each
demonstration as the same prompt written for the demonstration's persona followed by ``Answer:`` and
its output, then the prompt for this persona and an open ``Answer:``; few-shot mode shows the outputs
only, zero-shot none. The recipe's content hash (TOML and examples) is its template version, so editing
either makes new rows while an unchanged recipe resumes.

Everything is checked when the file loads, before any work: the prompt uses only ``{NAME}`` placeholders
(no format specs or conversions), numbers are finite, and the schema refers to nothing outside itself and
holds no regex that can backtrack catastrophically (``recipe_checks.py``).

A judge: with ``input = "rows"`` the recipe reads the finished rows of the task named by ``--task``
instead of personas, and its prompt has ``{text}`` (the row's synthesized text) besides ``{persona}``
(the persona it was written for). Its schema must have an integer ``score`` (1-5, with reasons as the
rubric asks); each answer is stored as a verdict on the row, which passes at ``score >= 4``
(``export TASK --verified``). Its examples also carry the ``text`` judged, and are always shown whole.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, create_model

from .errors import UsageError
from .prompting import SynthesisOptions, answer_text, few_shot_block, reject_copies, structured_answer
from .recipe_checks import refused_in_schema
from .tasks import Completion, Prompt, Rejected, Synthesis, Synthesizer, Verdict, Verifier, VerifierOptions, WorkItem

FIELDS = {"name", "description", "prompt", "schema", "examples", "mode", "max_tokens", "temperature", "stop",
          "options", "input"}
LABEL = "Answer"
PASS_SCORE = 4  # a judge's verdict passes at this score or above


class RecipeError(UsageError):
    """A recipe file that cannot be used: one line naming the file, and the line or field."""


def is_recipe_path(name: str) -> bool:
    return name.endswith(".toml")


class RecipePrompting:
    """What a recipe's task does with its fields: the prompt in both forms, and the schema's checks."""

    prompt_template: ClassVar[str]
    demonstrations: ClassVar[list[dict]] = []
    schema: ClassVar[dict | None] = None
    max_tokens: ClassVar[int] = 256
    temperature: ClassVar[float | None] = None
    stops: ClassVar[list[str]] = []
    recipe_path: ClassVar[str]

    def _instruction(self, persona: str, text: str | None = None) -> str:
        return self.prompt_template.format(persona=persona, text=text,
                                           **self.options.model_dump(exclude={"mode", "task"}))

    def _render(self, demo: dict, with_persona: bool) -> str:
        output = demo["output"] if self.schema is None else json.dumps(demo["output"], ensure_ascii=False)
        shown = self._instruction(demo["persona"], demo.get("text")) + "\n" if with_persona else ""
        return shown + f"{LABEL}: {output}"

    def _prompt(self, persona: str, text: str | None, mode: str) -> Prompt:
        examples = few_shot_block(self.demonstrations, mode, self._render)
        instruction = self._instruction(persona, text)
        chat = instruction if not examples else f"Here are some examples:\n\n{examples}{instruction}"
        return Prompt(
            completion=f"{examples}{instruction}\n{LABEL}:",
            chat=[{"role": "user", "content": chat}],
            max_tokens=self.max_tokens,
            stop=list(self.stops),
            json_schema=self.schema,
            temperature=self.temperature,
        )

    def _structured(self, completion: Completion, persona: str) -> Any:
        """The answer decoded under the schema and checked against it; no string in it a copy."""
        value = structured_answer(completion, self.schema)
        problem = schema_problem(value, self.schema)
        if problem:
            raise Rejected(f"answer does not match the recipe's schema: {problem}")
        copied_from = [s for d in self.demonstrations for s in _strings(d["output"])]
        for text in _strings(value):
            reject_copies(text, persona=persona, demos=copied_from)
        return value


class RecipeTask(RecipePrompting, Synthesizer):
    """The synthesizer every recipe becomes; ``load_recipe`` subclasses it with the recipe's fields."""

    def prompt(self, persona: str) -> Prompt:
        return self._prompt(persona, None, self.options.mode)

    def parse(self, completion: Completion, persona: str) -> Synthesis:
        if self.schema is not None:
            value = self._structured(completion, persona)
            fields = value if isinstance(value, dict) else {"value": value}
            return Synthesis(json.dumps(value, ensure_ascii=False), fields=fields)
        text = answer_text(completion, label=LABEL)
        reject_copies(text, persona=persona, demos=[d["output"] for d in self.demonstrations])
        return Synthesis(text)


class RecipeJudge(RecipePrompting, Verifier):
    """The verifier a recipe with ``input = "rows"`` becomes: one scored verdict per row of ``--task``."""

    def run_item(self, item: WorkItem):
        persona = item.data["persona"] or ""
        judged = self._structured((yield self._prompt(persona, item.data["text"], "persona-few-shot")), persona)
        return Verdict(passed=judged["score"] >= PASS_SCORE, score=judged["score"],
                       fields={k: v for k, v in judged.items() if k != "score"})


def _strings(value: Any) -> list[str]:
    """The strings inside a JSON value: each is checked on its own for copying."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in _strings(v)] if isinstance(value, list) else []


def load_recipe(path: str | Path) -> type[RecipeTask] | type[RecipeJudge]:
    """The task class a recipe file describes, or RecipeError naming the file and the field or line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from None

    def bad(field: str, problem: str) -> RecipeError:
        return RecipeError(f"{path}: {field}: {problem}")

    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise bad(unknown[0], f"unknown field (a recipe has: {', '.join(sorted(FIELDS))})")
    for required in ("name", "prompt"):
        if not isinstance(data.get(required), str) or not data[required].strip():
            raise bad(required, "missing (a non-empty string is required)")
    name = data["name"].strip()
    if not all(c.isalnum() or c in "-_" for c in name):
        raise bad("name", f"{name!r} may use only letters, digits, '-' and '_'")

    judge = _optional(data, "input", str, bad, "personas") == "rows"
    if data.get("input", "personas") not in ("personas", "rows"):
        raise bad("input", f"{data['input']!r}: expected \"personas\" (the default) or \"rows\" (a judge)")
    if judge and "mode" in data:
        raise bad("mode", "a judge (input = \"rows\") always shows its examples whole; it has no mode")
    options = _options_model(data.get("options", {}), data.get("mode"), bad, judge)
    prompt = data["prompt"]
    _check_placeholders(prompt, {"persona", *options.model_fields} - {"mode", "task"} | ({"text"} if judge else set()),
                        "text" if judge else "persona", bad)

    schema = data.get("schema")
    if schema is not None:
        _check_schema(schema, bad)
    if judge:
        _check_judge_schema(schema, bad)
    demos, demo_bytes = [], b""
    if "examples" in data:
        if not isinstance(data["examples"], str):
            raise bad("examples", "expected the name of a JSONL file next to the recipe")
        demos, demo_bytes = _read_examples(path.parent / data["examples"], schema, bad, judge)

    description = _optional(data, "description", str, bad)
    attrs: dict[str, Any] = {
        "name": name,
        "description": description or f"recipe {path.name}",
        "row_description": description or name,
        "template": f"recipe:{path.name}",
        "template_version": hashlib.sha256(raw + b"\0" + demo_bytes).hexdigest()[:16],
        "Options": options,
        "prompt_template": prompt,
        "demonstrations": demos,
        "schema": schema,
        "stops": [f"\n{LABEL}:", *_lead(prompt), *_optional(data, "stop", list, bad, [])],
        "recipe_path": str(path),
    }
    if "max_tokens" in data:
        attrs["max_tokens"] = _number(data, "max_tokens", int, 1, None, bad)
    if "temperature" in data:
        attrs["temperature"] = float(_number(data, "temperature", (int, float), 0, 2, bad))
    if not all(isinstance(s, str) and s for s in attrs["stops"]):
        raise bad("stop", "expected a list of non-empty strings")
    return type(f"Recipe_{name}", (RecipeJudge if judge else RecipeTask,), attrs)


def _optional(data: dict, field: str, kind: type, bad, default=None):
    value = data.get(field, default)
    if value is not None and not isinstance(value, kind):
        raise bad(field, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _number(data: dict, field: str, kind, low, high, bad):
    value = data[field]
    if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < low
            or (high is not None and value > high)):
        raise bad(field, f"expected a number {'from ' + str(low) if high is None else f'from {low} to {high}'}, got {value!r}")
    return value


def _lead(prompt: str) -> list[str]:
    """The prompt's opening words: a base model that starts a new record after its answer is cut there."""
    literal = next(iter(string.Formatter().parse(prompt)))[0].strip().split("\n")[0]
    return [f"\n{literal}"] if len(literal) >= 8 else []


def _options_model(table: Any, mode: Any, bad, judge: bool = False):
    """The recipe's ``[options]`` as a pydantic model, on top of the options every synthesizer (or,
    for a judge, every verifier) has."""
    if not isinstance(table, dict):
        raise bad("options", "expected a table of NAME = default or NAME = { default = ..., help = ... }")
    fields: dict[str, Any] = {}
    for key, spec in table.items():
        where = f"options.{key}"
        if not key.isidentifier() or key in ("mode", "persona", "task", "text"):
            raise bad(where, "not a usable option name (letters, digits and '_'; not mode, persona, task or text)")
        if isinstance(spec, dict):
            extra = set(spec) - {"default", "help"}
            if "default" not in spec or extra:
                raise bad(where, "expected { default = ..., help = \"...\" }")
            default, help_text = spec["default"], spec.get("help", "")
        else:
            default, help_text = spec, ""
        if not isinstance(default, (str, int, float, bool)):
            raise bad(where, "the default must be a string, number or boolean")
        if isinstance(default, float) and not math.isfinite(default):
            raise bad(where, f"the default {default} is not a finite number")
        fields[key] = (type(default), Field(default, description=str(help_text)))
    if mode is not None:
        try:
            SynthesisOptions(mode=mode)
        except ValidationError:
            raise bad("mode", f"{mode!r} is not one of zero-shot, few-shot, persona-few-shot") from None
        fields["mode"] = (SynthesisOptions.model_fields["mode"].annotation,
                          Field(mode, description=SynthesisOptions.model_fields["mode"].description))
    return create_model("Options", __base__=VerifierOptions if judge else SynthesisOptions, **fields)


def _check_placeholders(prompt: str, known: set[str], required: str, bad) -> None:
    try:
        fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(prompt)
                  if field is not None]
    except ValueError as exc:
        raise bad("prompt", f"{exc} (write {{{{ and }}}} for literal braces)") from None
    # A format spec or conversion ({persona:>30000000}, {persona!r}) would let a recipe build huge prompts.
    for field, spec, conversion in fields:
        if spec or conversion:
            raise bad("prompt", f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}: "
                                f"format specs and conversions are not allowed, write {{{field}}}")
    names = [field for field, _, _ in fields]
    if required not in names:
        raise bad("prompt", f"the template must use {{{required}}}")
    for field in names:
        if field not in known:
            raise bad("prompt", f"unknown placeholder {{{field}}} (known: "
                                f"{', '.join('{' + k + '}' for k in sorted(known))}; write {{{{ and }}}} for literal braces)")


def _check_schema(schema: Any, bad) -> None:
    from jsonschema import SchemaError, validators

    if not isinstance(schema, dict):
        raise bad("schema", "expected a table holding a JSON schema")
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise bad("schema" + (f".{where}" if where else ""), f"not a valid JSON schema: {exc.message}") from None
    refused = refused_in_schema(schema)
    if refused is not None:
        raise bad(f"schema.{refused[0]}", refused[1])


def _check_judge_schema(schema: Any, bad) -> None:
    """A judge's answer is an object with a required integer ``score``: the verdict is read from it."""
    score = (schema or {}).get("properties", {}).get("score")
    if schema is None or schema.get("type") != "object" or not isinstance(score, dict) \
            or score.get("type") != "integer" or "score" not in schema.get("required", []):
        raise bad("schema", "a judge (input = \"rows\") needs an object schema with a required integer 'score'")


def schema_problem(value: Any, schema: dict) -> str | None:
    """Why a value does not match the schema (the first reason, with where), or None."""
    from jsonschema import validators

    error = next(iter(validators.validator_for(schema)(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _not_finite(name: str):
    raise ValueError(f"{name} is not a finite number")


def _read_examples(path: Path, schema: dict | None, bad, judge: bool = False) -> tuple[list[dict], bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise bad("examples", f"cannot read {path}: {exc.strerror}") from None
    demos = []
    for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            demo = json.loads(line, parse_constant=_not_finite)
        except ValueError as exc:  # JSONDecodeError, or NaN / Infinity
            raise RecipeError(f"{where}: invalid JSON: {getattr(exc, 'msg', exc)}") from None
        if not isinstance(demo, dict) or not isinstance(demo.get("persona"), str) or "output" not in demo \
                or (judge and not isinstance(demo.get("text"), str)):
            also = ", \"text\" (the text judged, a string)" if judge else ""
            raise RecipeError(f"{where}: expected an object with \"persona\" (a string){also} and \"output\"")
        problem = (schema_problem(demo["output"], schema) if schema is not None
                   else None if isinstance(demo["output"], str) else "expected a string")
        if problem:
            raise RecipeError(f"{where}: output: {problem}")
        demos.append({"persona": demo["persona"], "output": demo["output"], **({"text": demo["text"]} if judge else {})})
    if not demos:
        raise bad("examples", f"{path} holds no demonstrations")
    return demos, raw
