"""What a task sees as ``ctx.store``: a ``PluginStore``, the documented methods of
docs/plugins/store-api.md and nothing else (no connection, no SQL). The core can then change how it
stores things without breaking plugins, and a plugin cannot reach past these by accident: a test
checks the plugins' sources and that nothing else is here."""

from __future__ import annotations

# The methods plugins use (docs/plugins/store-api.md); a test checks each is documented and tested.
PLUGIN_API = ("persona_count", "document_count", "select_documents", "select_personas", "stream_personas",
              "add_personas", "mark_personas", "forget_method", "marked_count", "read", "append", "delete", "tuned",
              "amend_run_options", "personas_without_vectors", "add_persona_vectors", "persona_vectors")


class PluginStore:
    """The store as plugins use it: each method of ``PLUGIN_API`` passed on to the ``Store``."""

    __slots__ = ("_store",)

    def __init__(self, store):  # the whole Store (not imported here: the package imports this module)
        self._store = store

    def __repr__(self) -> str:
        return f"PluginStore({self._store.path})"


def _passed_on(name: str):
    def method(self, *args, **kwargs):
        return getattr(self._store, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _method in PLUGIN_API:
    setattr(PluginStore, _method, _passed_on(_method))
