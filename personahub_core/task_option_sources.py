"""A task's options from the same places as settings, highest first: the command line (``--topic
geometry``; ``options`` in Python), the environment (``PERSONAHUB_MATH__TOPIC=geometry``), the task's table
in ``personahub.toml`` (``[tasks.math]``, ``topic = "geometry"``), then its ``Options`` model's default.

Names match as settings' do: variables in any case, ``-`` and ``_`` alike in task and option names
(``PERSONAHUB_PERSONA_TO_PERSONA__HOPS``, ``with-solution = true``). A variable holds what the flag takes
(``true``/``false`` for a flag, a comma list for a list); the file holds TOML values.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import UsageError
from .settings import SettingsError, config_file, one_line, toml_values

TASKS_TABLE = "tasks"


def env_prefix(task_name: str) -> str:
    """``persona-to-persona`` -> ``PERSONAHUB_PERSONA_TO_PERSONA__``: what its options' variables start with."""
    return f"PERSONAHUB_{_normal(task_name).upper()}__"


def table_name(task_name: str) -> str:
    return f"{TASKS_TABLE}.{task_name}"


def is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


def resolve_task_options(task_cls: type, given: dict[str, Any]) -> tuple[BaseModel, dict[str, str]]:
    """The task's Options model from ``given`` (the command line's values by name), the environment and
    the file, and where each value came from (flag, env VARIABLE, the file, default). An unknown option
    or a bad value is a one-line usage error naming the flag, variable or file key."""
    path = config_file()
    layers = [*_env_layers(task_cls), *_file_layers(task_cls, path)]
    values, origins = dict(given), {name: "flag" for name in given}
    for name in task_cls.Options.model_fields.keys() - given.keys():
        origin, value = next(((o, layer[name]) for o, layer in layers if name in layer), ("default", None))
        origins[name] = origin
        if origin != "default":
            values[name] = value
    return task_options(task_cls, values, origins), origins


def task_options(task_cls: type, values: dict[str, Any], origins: dict[str, str] | None = None) -> BaseModel:
    """The task's Options model from values by name; a bad or unknown one is a usage error naming the
    flag, or the variable or file key ``origins`` says it came from."""
    try:
        return task_cls.Options(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "options"
        origin = (origins or {}).get(name, "flag")
        if origin in ("flag", "default"):  # a required option no place gave is asked for as its flag
            raise UsageError(f"task '{task_cls.name}' option --{name.replace('_', '-')}: {err['msg']}") from None
        field = name if origin.startswith("env ") else f"{table_name(task_cls.name)}.{name}"
        raise SettingsError(one_line(err, field, origin)) from None


def check_task_tables(tasks: dict[str, type], running: type | None = None) -> list[str]:
    """Every ``[tasks.NAME]`` table of the file: a key the task does not have is an error (as an unknown
    setting is); a table naming no installed task (nor the recipe being run) is returned as a warning, for
    its plugin may just not be loaded here."""
    path = config_file()
    known = {_normal(cls.name): cls for cls in [*tasks.values(), *([running] if running else [])]}
    warnings = []
    for name, table in _tables(path).items():
        task_cls = known.get(_normal(name))
        if task_cls is None:
            warnings.append(f"{path}: [{table_name(name)}] names no installed task; its options are not used")
        else:
            _check_names(task_cls, {key: (f"{table_name(name)}.{key}", str(path)) for key in table})
    return warnings


def _env_layers(task_cls: type) -> list[tuple[str, dict[str, Any]]]:
    prefix = env_prefix(task_cls.name).lower()
    given = {var: value for var, value in os.environ.items() if var.lower().startswith(prefix)}
    options = {var: _normal(var[len(prefix):]) for var in given}
    _check_names(task_cls, {name: (var, f"env {var}") for var, name in options.items()})
    fields = task_cls.Options.model_fields
    return [(f"env {var}", {name: _as_typed(given[var], fields[name].annotation)}) for var, name in options.items()]


def _file_layers(task_cls: type, path: Path) -> list[tuple[str, dict[str, Any]]]:
    layers = []
    for name, table in _tables(path).items():
        if _normal(name) == _normal(task_cls.name):
            _check_names(task_cls, {key: (f"{table_name(name)}.{key}", str(path)) for key in table})
            layers.append((str(path), table))
    return layers


def _tables(path: Path) -> dict[str, dict[str, Any]]:
    """The file's task tables by the name written, their keys with ``_`` for ``-``."""
    tables = toml_values(path).get(TASKS_TABLE, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise SettingsError(f"{path}: {TASKS_TABLE}: expected a table per task, e.g. [tasks.math] with topic = \"geometry\"")
    return {name: {key.replace("-", "_"): value for key, value in table.items()} for name, table in tables.items()}


def _check_names(task_cls: type, given: dict[str, tuple[str, str]]) -> None:
    """``given``: each option name with the field that gave it (a variable, a file key) and its origin."""
    fields = task_cls.Options.model_fields
    for key, (field, origin) in given.items():
        if key not in fields:
            raise SettingsError(f"{one_line({'type': 'extra_forbidden'}, field, origin)} "
                                f"(task '{task_cls.name}' has options: {', '.join(fields) or 'none'})")


def _as_typed(value: str, annotation: Any) -> Any:
    """A variable's text as its flag would take it: a list option's is comma separated."""
    return [v.strip() for v in value.split(",") if v.strip()] if is_list(annotation) else value


def _normal(name: str) -> str:
    return name.replace("-", "_").lower()
