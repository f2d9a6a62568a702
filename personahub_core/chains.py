"""The two chains the core runs without naming a plugin: the main job's bootstrap and ``personahub dedup``.

A task declares its place in them with class attributes (defaults on ``Task``: in neither chain), and
the core takes the installed tasks in step order (ties by name):

- ``bootstrap_step`` (and ``bootstrap_options``, the options it runs with there): a synthesizer run on
  a store without personas first runs these over the bundled sample corpus. At least one of them
  must be a persona source, or there is nothing to bootstrap from.
- ``dedup_step``: ``personahub dedup`` runs these deduplicators, each on what the earlier ones kept.
"""

from __future__ import annotations

from .errors import UsageError

NO_SOURCE = ("the store has no personas and no installed task makes them from text: install a persona source "
             "plugin, or import personas with: personahub run --plugin import --input FILE")
NO_DEDUP = "no installed task is a step of personahub dedup: install a deduplicator plugin"


def _in_order(tasks: dict[str, type], attribute: str) -> list[type]:
    steps = [cls for cls in tasks.values() if getattr(cls, attribute) is not None]
    return sorted(steps, key=lambda cls: (getattr(cls, attribute), cls.name))


def bootstrap_chain(tasks: dict[str, type]) -> list[tuple[type, dict]]:
    """(task class, options) of each bootstrap step in order; a usage error when none makes personas."""
    steps = _in_order(tasks, "bootstrap_step")
    if not any(cls.kind == "source" for cls in steps):
        raise UsageError(NO_SOURCE)
    return [(cls, dict(cls.bootstrap_options)) for cls in steps]


def dedup_chain(tasks: dict[str, type]) -> list[type]:
    """The deduplicators of ``personahub dedup`` in order."""
    return [cls for cls in _in_order(tasks, "dedup_step") if cls.kind == "deduplicator"]
