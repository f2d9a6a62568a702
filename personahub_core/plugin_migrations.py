"""Plugins' own tables: the migrations they declare through ``register_migrations``, run on a store.

A plugin's tables are its own: a store gets them when the plugin is installed and a command that
runs tasks opens it, and each statement runs once (``Store.migrate_plugin`` records it by owner).
"""

from __future__ import annotations

from .plugins import PluginError, Registry, get_registry
from .store import Store


def registered_migrations(registry: Registry) -> dict[str, list[str]]:
    """Each owner's statements, as the installed plugins declare them."""
    found: dict[str, list[str]] = {}
    for impl in registry.manager.hook.register_migrations.get_hookimpls():

        def register(owner: str, statements: list[str], plugin: str = impl.plugin_name) -> None:
            if not isinstance(owner, str) or not owner or not all(isinstance(s, str) for s in statements):
                raise PluginError(f"plugin '{plugin}' registers migrations as {owner!r}: expected a name and a list of SQL")
            if owner in found:
                raise PluginError(f"plugin '{plugin}' registers migrations for '{owner}', already registered by another plugin")
            found[owner] = list(statements)

        impl.function(register=register)
    return found


def migrate_plugins(store: Store, registry: Registry | None = None) -> None:
    """Run on ``store`` what the installed plugins' migrations it has not run yet."""
    for owner, statements in registered_migrations(registry or get_registry()).items():
        store.migrate_plugin(owner, statements)
