"""What a user can learn about a task: its kind, where it comes from, and its options as flags (also
given as ``PERSONAHUB_<TASK>__<OPTION>`` or in ``[tasks.<task>]``); and about a backend or executor: its
options, given as ``-o NAME=VALUE``.

``personahub run --plugin TASK --help`` and ``personahub plugins show NAME`` both print this, generated
from the ``Options`` model, so the help cannot drift from what the command accepts.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from .task_option_sources import env_prefix, table_name
from .tasks import Task


def type_name(annotation: Any) -> str:
    """A field's type as a user types it: text, integer, number, flag, one of a|b, or a comma list."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"{type_name(args[0]) if args else 'text'},..."
    return {bool: "flag", int: "integer", float: "number", str: "text"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def option_rows(options_cls: type[BaseModel], dash_o: bool = False) -> list[dict]:
    """One row per option: its flag (``-o NAME=`` for a backend's or executor's), type, default (None
    when required) and help."""
    rows = []
    for name, field in options_cls.model_fields.items():
        flag = f"-o {name}=" if dash_o else "--" + name.replace("_", "-")  # a flag (bool) also has --no-NAME
        default = None if field.default is PydanticUndefined else field.default
        rows.append({"flag": flag, "type": type_name(field.annotation), "default": default,
                     "required": field.is_required(), "help": field.description or ""})
    return rows


def task_info(task_cls: type[Task], plugins: list) -> dict:
    """The task as ``plugins show --json`` prints it; ``plugins`` is the registry's plugin list."""
    recipe = getattr(task_cls, "recipe_path", None)
    owner = f"recipe {recipe}" if recipe else next(
        (p.name for p in plugins if {"kind": task_cls.kind, "name": task_cls.name} in p.tasks), "unknown")
    return {"name": task_cls.name, "kind": task_cls.kind, "plugin": owner, "description": task_cls.description,
            "options": option_rows(task_cls.Options), "environment_prefix": env_prefix(task_cls.name),
            "config_table": table_name(task_cls.name)}


def task_options_title(task_cls: type[Task], title: str) -> str:
    """A task's options panel title, saying the other two places its options can be given."""
    return escape(f"{title} (also {env_prefix(task_cls.name)}NAME, or [{table_name(task_cls.name)}] in "
                  "personahub.toml)")


def component_info(kind: str, cls: type) -> dict:
    """A backend or executor as ``plugins show --json`` prints it."""
    return {"name": cls.name, "kind": kind, "description": getattr(cls, "description", ""),
            "options": option_rows(cls.Options, dash_o=True)}


def options_panel(options_cls: type[BaseModel], title: str, dash_o: bool = False) -> Panel:
    """The options as typer shows its own: flag, type, then help and default, in a titled box."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(style="yellow")
    grid.add_column()
    for row in option_rows(options_cls, dash_o):
        default = "[required]" if row["required"] else f"[default: {json.dumps(row['default'])}]"
        shown = ("true | false" if dash_o else "") if row["type"] == "flag" else row["type"]
        grid.add_row(row["flag"], shown, escape(f"{row['help']} {default}".strip()))
    if not grid.rows:
        grid.add_row("(none)", "", "")
    return Panel(grid, title=title, title_align="left", border_style="dim")
