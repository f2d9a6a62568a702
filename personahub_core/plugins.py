"""Plugin loading and the component registries.

Built-in components register through the same hooks as third-party plugins: the core's own
``personahub_core.default_plugins`` is registered first, then every entry point in the group
``personahub`` (restricted by ``PERSONAHUB_LOAD_PLUGINS``, a comma list; empty means none).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import PersonaHubError, UsageError

GROUP = "personahub"
KINDS = ("source", "expander", "deduplicator", "synthesizer", "verifier")


class PluginError(PersonaHubError):
    """A plugin is broken: a duplicate name, a misspelt hook, a class of the wrong kind."""


@dataclass
class PluginInfo:
    name: str
    version: str
    tasks: list[dict] = field(default_factory=list)


@dataclass
class Registry:
    tasks: dict[str, type] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None
    _components: dict[str, dict[str, type]] = field(default_factory=dict, repr=False)

    # Backends and executors are collected when first asked for: registering them imports their modules
    # (HTTP clients, llama.cpp, Ray), which --help, stats or export never need.
    @property
    def backends(self) -> dict[str, type]:
        return self._collected("register_backends")

    @property
    def executors(self) -> dict[str, type]:
        return self._collected("register_executors")

    @property
    def export_formats(self) -> dict[str, type]:
        return self._collected("register_export_formats")

    def backend(self, name: str) -> type:
        """The registered backend class of that name, or a usage error listing the installed ones."""
        return _named("backend", name, self.backends)

    def executor(self, name: str) -> type:
        return _named("executor", name, self.executors)

    def _collected(self, hook_name: str) -> dict[str, type]:
        if hook_name not in self._components:
            found: dict[str, type] = {}
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                _collect(impl, found, _check_named)
            self._components[hook_name] = found
        return self._components[hook_name]


def _named(kind: str, name: str, installed: dict[str, type]) -> type:
    if name not in installed:
        raise UsageError(f"unknown {kind} '{name}'; installed: {', '.join(sorted(installed))}")
    return installed[name]


_registry: Registry | None = None


def get_registry() -> Registry:
    """Load plugins once per process."""
    global _registry
    if _registry is None:
        _registry = load_plugins()
    return _registry


def reset_registry() -> None:
    """Forget loaded plugins (tests register their own)."""
    global _registry
    _registry = None


def load_plugins(extra: list[object] | None = None) -> Registry:
    from . import default_plugins

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    pm.register(default_plugins, name="personahub-core")

    allowed = os.environ.get("PERSONAHUB_LOAD_PLUGINS")
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    dists: dict[str, metadata.Distribution] = {}
    for ep in metadata.entry_points(group=GROUP):
        if allow is not None and ep.name not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue  # the same distribution seen twice on sys.path
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not take the whole CLI down silently
            raise PluginError(f"plugin '{ep.name}' failed to import: {type(exc).__name__}: {exc}") from None
        pm.register(module, name=ep.name)
        if ep.dist is not None:
            dists[ep.name] = ep.dist
    for i, plugin in enumerate(extra or []):
        pm.register(plugin, name=getattr(plugin, "__name__", f"extra-{i}"))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements an unknown hook: {exc}") from None

    registry = Registry(manager=pm)
    owned: dict[str, list[type]] = {}
    for impl in pm.hook.register_tasks.get_hookimpls():
        owned.setdefault(impl.plugin_name, []).extend(_collect(impl, registry.tasks, _check_task))
    for plugin_name, _ in pm.list_name_plugin():
        dist = dists.get(plugin_name)
        registry.plugins.append(
            PluginInfo(
                name=dist.metadata["Name"] if dist else plugin_name,
                version=dist.version if dist else _core_version(),
                tasks=[{"kind": cls.kind, "name": cls.name} for cls in owned.get(plugin_name, [])],
            )
        )
    return registry


def _collect(impl: pluggy.HookImpl, into: dict[str, type], check) -> list[type]:
    found: list[type] = []

    def register(cls: type) -> None:
        check(cls, impl.plugin_name)
        if cls.name in into:
            raise PluginError(f"plugin '{impl.plugin_name}' registers '{cls.name}', already registered by another plugin")
        into[cls.name] = cls
        found.append(cls)

    impl.function(register=register)
    return found


def _check_named(cls: type, plugin_name: str) -> None:
    if not isinstance(cls, type) or not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise PluginError(f"plugin '{plugin_name}' registered {cls!r}, which has no 'name'")


def _check_task(cls: type, plugin_name: str) -> None:
    from .tasks import Task

    _check_named(cls, plugin_name)
    if not issubclass(cls, Task):
        raise PluginError(f"plugin '{plugin_name}': {cls.__name__} is not a personahub_core.tasks.Task")
    if cls.kind not in KINDS:
        raise PluginError(f"plugin '{plugin_name}': task '{cls.name}' has kind {cls.kind!r}, not one of {', '.join(KINDS)}")


def _core_version() -> str:
    from . import __version__

    return __version__
