"""Game worlds for the NPC synthesizer: a markdown or YAML description, bundled or the user's own.

A markdown world is used as written (its first ``# heading`` names it). A YAML world is a mapping
with a ``name`` and any descriptive keys (premise, setting, factions, places, tone...), rendered to
the same markdown shape so the prompt reads alike whatever the source.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

BUNDLED = Path(__file__).parent / "worlds"
MARKDOWN = (".md", ".markdown", ".txt")
YAML = (".yaml", ".yml")
MIN_WORDS = 30


class WorldError(ValueError):
    """A world file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class World:
    name: str
    slug: str  # bundled name or file stem, matched against the demonstrations' "world"
    text: str  # markdown shown to the model

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


def bundled_worlds() -> list[str]:
    return sorted(p.stem for p in BUNDLED.iterdir() if p.suffix in MARKDOWN + YAML)


def world_path(spec: str) -> Path:
    """A bundled world's name (``ember-reach``) or a path to a world file."""
    for suffix in MARKDOWN + YAML:
        if (BUNDLED / f"{spec}{suffix}").is_file():
            return BUNDLED / f"{spec}{suffix}"
    return Path(spec).expanduser()


def load_world(spec: str) -> World:
    path = world_path(spec)
    if not path.is_file():
        raise WorldError(f"{path}: no such world file (bundled worlds: {', '.join(bundled_worlds())})")
    if path.suffix.lower() not in MARKDOWN + YAML:
        raise WorldError(f"{path}: unsupported world file type '{path.suffix}' (use .md or .yaml)")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorldError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise WorldError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix.lower() in YAML:
        name, text = _from_yaml(path, raw)
    else:
        text = raw.strip()
        headings = [line[2:].strip() for line in text.splitlines() if line.startswith("# ")]
        name = headings[0] if headings else path.stem.replace("-", " ").title()
    words = len(text.split())
    if words < MIN_WORDS:
        raise WorldError(f"{path}: the world description is too short ({words} words, at least {MIN_WORDS})")
    return World(name=name, slug=path.stem, text=text)


def _from_yaml(path: Path, raw: str) -> tuple[str, str]:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "cannot parse"
        raise WorldError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise WorldError(f"{path}: a YAML world must be a mapping with a 'name' and descriptive keys")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WorldError(f"{path}: missing 'name' (the world's name, a string)")
    sections = [f"# {name.strip()}"]
    for key, value in data.items():
        if key == "name":
            continue
        sections.append(f"## {_heading(str(key))}\n\n{_render(value)}")
    return name.strip(), "\n\n".join(sections)


def _heading(key: str) -> str:
    text = " ".join(key.replace("_", " ").replace("-", " ").split()).capitalize()
    return re.sub(r"\bnpc", "NPC", text, flags=re.I)


def _render(value: object) -> str:
    """Strings as paragraphs, lists as bullets ({name, description} items as "**name**: description")."""
    if isinstance(value, list):
        return "\n".join(f"- {_item(v)}" for v in value)
    if isinstance(value, dict):
        return "\n".join(f"- **{k}**: {_item(v)}" for k, v in value.items())
    return " ".join(str(value).split())


def _item(value: object) -> str:
    if isinstance(value, dict) and "name" in value:
        rest = {k: v for k, v in value.items() if k != "name"}
        detail = " ".join(" ".join(str(v).split()) for v in rest.values())
        return f"**{value['name']}**: {detail}" if detail else f"**{value['name']}**"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {' '.join(str(v).split())}" for k, v in value.items())
    return " ".join(str(value).split())
