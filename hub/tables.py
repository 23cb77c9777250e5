"""The hub's side of plugin tables: each plugin's migrations at start, and whose tables a
caller gets from ``hub.tables(__name__)``.

A plugin's namespace comes from the name it is registered under (its entry point's name, its
plugins_dir file or folder, its built-in module's last part), never from what it says.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

import structlog

from hub.errors import PluginTableError
from hub.store.plugin_migrations import check, migrate
from hub.store.plugin_namespace import Namespace

if TYPE_CHECKING:
    from hub.plugins import HubPlugins
    from hub.store.database import Database

log = structlog.get_logger("hub.tables")


async def migrate_plugins(plugins: HubPlugins, db: Database) -> None:
    """Bring every plugin's tables to the version its ``migrations`` hook declares.

    A plugin whose hook raises, whose list is invalid, whose namespace another plugin already
    has, or whose migration fails is disabled (:meth:`HubPlugins.fail`) with a one-line
    reason; the others are migrated all the same.
    """
    owners: dict[Namespace, str] = {}
    for name in list(plugins.implementers("migrations")):
        try:
            namespace = Namespace.of(name)
            if namespace in owners:
                raise PluginTableError(f"its tables would be plugin {owners[namespace]!r}'s")
            owners[namespace] = name
            applied = await migrate(db, namespace, check(await _declared(plugins, name)))
        except PluginTableError as exc:
            plugins.fail(name, f"tables: {exc}")
            continue
        if applied:
            log.info("plugin tables migrated", plugin=name, versions=applied)


async def _declared(plugins: HubPlugins, name: str) -> object:
    try:
        return await plugins.call_plugin(name, "migrations")
    except Exception as exc:
        raise PluginTableError(f"migrations raised {type(exc).__name__}: {exc}") from exc


def namespace_of(plugins: HubPlugins, caller: str | object) -> Namespace:
    """The namespace of the plugin ``caller`` belongs to: a module name (any module of the
    plugin's package, so ``__name__`` does) or the registered plugin object itself.

    :raise LookupError: no loaded plugin is or contains ``caller``.
    """
    found: tuple[int, str] | None = None
    for name, plugin in plugins.pm.list_name_plugin():
        if plugin is caller:
            return Namespace.of(name)
        if isinstance(caller, str) and isinstance(plugin, types.ModuleType):
            module = plugin.__name__
            if (caller == module or caller.startswith(f"{module}.")) and (
                found is None or len(module) > found[0]
            ):
                found = (len(module), name)
    if found is None:
        raise LookupError(f"{caller!r} is not a loaded plugin or one of its modules")
    return Namespace.of(found[1])
