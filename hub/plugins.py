"""The plugin manager: loads built-ins, entry points and plugins_dir files, isolates failures.

Built-in plugins are listed in :data:`DEFAULT_PLUGINS`; third-party ones come from the
entry-point group ``advisoros_hub`` or from ``.py`` files and packages in ``plugins.dir``.
Every hook call goes through :meth:`HubPlugins.call_owner` (per-integration hooks, only the
owning plugin) or :meth:`HubPlugins.broadcast` (every implementation, each call isolated).
Those helpers pass every hook the plugin API as ``hub`` and every per-integration hook its
integration's ``settings`` (see :meth:`HubPlugins.bind`), and trace calls when
``HUB_TRACE_HOOKS`` is set.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy
import structlog

from hub import __version__, hookspecs
from hub.config import PluginsSettings
from hub.model import Integration, IntegrationSettings, Stream
from hub.plugins_dir import import_path, plugin_files
from hub.store.records import NAME_RE, RESERVED_COLUMNS, table_name
from hub.tracing import traced

if TYPE_CHECKING:
    from hub.api import HubAPI

log = structlog.get_logger("hub.plugins")
T = TypeVar("T")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "hub.builtins.log_alerts",
    "hub.builtins.generic_webhooks",
    "plugins.quickbooks",
    "plugins.sendgrid",
    "plugins.stripe",
    "plugins.azure_storage",
    "plugins.openai",
)
"""Built-in plugins, imported by module name; every one can be turned off with plugins.deny."""

ENTRY_POINT_GROUP = "advisoros_hub"
CORE_PACKAGE = "hub.builtins."
"""Built-ins in this package are part of the core: their hooks receive the Hub itself."""
TRACE_ENV = "HUB_TRACE_HOOKS"


async def await_maybe(value: T | Awaitable[T]) -> T:
    """Return ``value``, awaiting it first if it is awaitable (hooks may be sync or async)."""
    if inspect.isawaitable(value):
        return await cast(Awaitable[T], value)
    return value


@dataclass
class PluginInfo:
    """A plugin as ``advisoros-hub plugins`` and the admin page show it."""

    name: str
    origin: str
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    integration: str | None = None
    error: str | None = None


class PluginLoadError(Exception):
    """A plugin could not be imported or registered; the message says why."""


class HubPlugins:
    """Owns the pluggy manager, the plugin list and the integration -> plugin map."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.integrations: dict[str, Integration] = {}
        self._owners: dict[str, object] = {}
        self._impls: dict[tuple[int, str], Callable[..., Any] | None] = {}
        self._implementers: dict[str, list[str]] = {}
        self.revision = 0
        """Bumped whenever the registered plugins change, so callers can drop their caches."""
        self.trace = os.environ.get(TRACE_ENV, "") not in {"", "0"}
        self._api: HubAPI | None = None
        self._core: HubAPI | None = None
        self._settings_for: Callable[[str], IntegrationSettings | None] | None = None

    def bind(
        self,
        api: HubAPI,
        settings_for: Callable[[str], IntegrationSettings | None],
        core: HubAPI,
    ) -> None:
        """Hand hooks ``api`` as ``hub`` (the core's own built-ins, :data:`CORE_PACKAGE`, get
        ``core``), and per-integration hooks ``settings_for(name)`` as ``settings``; a caller
        may still pass either itself."""
        self._api, self._settings_for, self._core = api, settings_for, core

    def _context(
        self, hook: str, integration: str | None, plugin: object, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        names = caller.spec.argnames if caller.spec is not None else ()
        out = dict(kwargs)
        core = str(getattr(plugin, "__name__", "")).startswith(CORE_PACKAGE)
        hub = self._core if core else self._api
        if "hub" in names and hub is not None:
            out.setdefault("hub", hub)
        if "settings" in names and integration is not None and self._settings_for is not None:
            out.setdefault("settings", self._settings_for(integration))
        return out

    def _call(
        self, hook: str, plugin: str, impl: Callable[..., Any], kwargs: dict[str, Any]
    ) -> Any:
        if self.trace:
            return traced(hook, plugin, kwargs, functools.partial(impl, **kwargs))
        return impl(**kwargs)

    # ------------------------------------------------------------------ loading

    def load(self, settings: PluginsSettings, builtins: Iterable[str] = DEFAULT_PLUGINS) -> None:
        """Load built-ins, entry-point plugins and plugins_dir plugins, honouring allow/deny."""
        for module_name in builtins:
            name = module_name.rsplit(".", 1)[-1]
            if self._wanted(name, settings):
                self._load_one(
                    name, "built-in", functools.partial(importlib.import_module, module_name)
                )
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self._wanted(ep.name, settings):
                version = ep.dist.version if ep.dist else ""
                self._load_one(ep.name, "entry point", ep.load, version)
        if settings.dir is not None:
            for path in plugin_files(settings.dir):
                name = path.stem if path.suffix == ".py" else path.name
                if self._wanted(name, settings):
                    self._load_one(
                        name, f"plugins_dir ({path})", functools.partial(import_path, path)
                    )
        self.pm.check_pending()

    def _wanted(self, name: str, settings: PluginsSettings) -> bool:
        if name in settings.deny:
            return False
        return not settings.allow or name in settings.allow

    def _load_one(
        self, name: str, origin: str, importer: Callable[[], object], version: str = ""
    ) -> None:
        if name in self.info:  # the first of a name wins: built-in, entry point, plugins_dir
            error = f"a plugin named {name!r} is already loaded ({self.info[name].origin})"
            self.info[f"{name} ({origin})"] = PluginInfo(name, origin, version, error=error)
            log.error("plugin not loaded", plugin=name, origin=origin, error=error)
            return
        info = PluginInfo(name=name, origin=origin, version=version)
        self.info[name] = info
        try:
            plugin = importer()
        except Exception as exc:
            info.error = f"import failed: {type(exc).__name__}: {exc}"
            log.error("plugin failed to import", plugin=name, origin=origin, error=info.error)
            return
        try:
            self.add(plugin, name, origin, version)
        except PluginLoadError as exc:
            info.error = str(exc)
            log.error("plugin failed to register", plugin=name, origin=origin, error=info.error)

    def add(self, plugin: object, name: str, origin: str = "test", version: str = "") -> PluginInfo:
        """Register one plugin object (module or instance) and its integration.

        :raise PluginLoadError: unknown hook (misspelt?), bad hook signature, or a bad
            ``register`` result; the plugin is then not registered.
        """
        if name in self.info and self.info[name].hooks:
            raise PluginLoadError(f"a plugin named {name!r} is already loaded")
        try:
            return self._add(plugin, name, origin, version)
        finally:
            self._forget_lookups()

    def _add(self, plugin: object, name: str, origin: str, version: str) -> PluginInfo:
        info = self.info.setdefault(name, PluginInfo(name=name, origin=origin))
        info.origin, info.error = origin, None
        info.version = (
            version
            or str(getattr(plugin, "__version__", ""))
            or (__version__ if origin == "built-in" else "")
        )
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginLoadError(f"invalid hook implementation: {exc}") from None
        unknown = [c.name for c in self.pm.get_hookcallers(plugin) or [] if c.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            raise PluginLoadError(f"unknown hook(s) {', '.join(unknown)} (misspelt?)")
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        try:
            integration = self._register_integration(plugin, name)
        except PluginLoadError:
            self.pm.unregister(plugin)
            info.hooks = []
            raise
        orphans = sorted(set(info.hooks) & hookspecs.PER_INTEGRATION_HOOKS)
        if integration is None and orphans:
            self.pm.unregister(plugin)
            info.hooks = []
            raise PluginLoadError(
                f"implements {', '.join(orphans)} but register() declares no integration"
            )
        info.integration = integration.name if integration else None
        return info

    def _register_integration(self, plugin: object, name: str) -> Integration | None:
        impl = self._impl(plugin, "register")
        if impl is None:
            return None
        try:
            integration = impl()
        except Exception as exc:
            raise PluginLoadError(f"register raised {type(exc).__name__}: {exc}") from None
        if integration is None:
            return None
        _validate_integration(integration)
        assert isinstance(integration, Integration)
        if integration.name in self.integrations:
            raise PluginLoadError(f"integration {integration.name!r} is already provided")
        taken = {
            table_name(other.name, stream.name): f"{other.name}.{stream.name}"
            for other in self.integrations.values()
            for stream in other.streams
        }
        for stream in integration.streams:
            clash = taken.get(table_name(integration.name, stream.name))
            if clash:  # records_a_b_c could be a_b.c or a.b_c
                raise PluginLoadError(
                    f"{integration.name}.{stream.name} would share a records table with {clash}"
                )
        self.integrations[integration.name] = integration
        self._owners[integration.name] = plugin
        return integration

    def remove(self, name: str) -> None:
        """Unregister a plugin by name (tests use this to clean up)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for integration, owner in list(self._owners.items()):
            if owner is plugin:
                del self._owners[integration]
                del self.integrations[integration]
        self.info.pop(name, None)
        self._forget_lookups()

    def fail(self, name: str, error: str) -> None:
        """Unregister a loaded plugin that cannot work (its tables failed to migrate); it stays
        listed with ``error``, like a plugin that failed to import."""
        info = self.info[name]
        self.remove(name)
        info.error, info.hooks = error, []
        self.info[name] = info
        log.error("plugin disabled", plugin=name, origin=info.origin, error=error)

    def _forget_lookups(self) -> None:
        """Drop cached hook lookups (the set of registered plugins changed)."""
        self._impls.clear()
        self._implementers.clear()
        self.revision += 1

    @property
    def failed(self) -> list[PluginInfo]:
        """Plugins that failed to import or register."""
        return [info for info in self.info.values() if info.error]

    # ------------------------------------------------------------------ calling

    def _impl(self, plugin: object, hook: str) -> Callable[..., Any] | None:
        key = (id(plugin), hook)
        if key not in self._impls:
            self._impls[key] = self._find_impl(plugin, hook)
        return self._impls[key]

    def _find_impl(self, plugin: object, hook: str) -> Callable[..., Any] | None:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        spec_args = tuple(caller.spec.argnames) if caller.spec is not None else None
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                argnames = impl.argnames
                if tuple(argnames) == spec_args:  # takes every argument: call it as it is
                    return cast(Callable[..., Any], impl.function)

                def call(_impl: Any = impl, _names: tuple[str, ...] = argnames, **kw: Any) -> Any:
                    return _impl.function(*[kw[n] for n in _names])

                return call
        return None

    def implementers(self, hook: str) -> list[str]:
        """Names of the plugins implementing ``hook``, in call order."""
        if hook not in self._implementers:
            caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
            self._implementers[hook] = [i.plugin_name for i in reversed(caller.get_hookimpls())]
        return self._implementers[hook]

    async def call_plugin(self, name: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the plugin called ``name`` only, and await its result.

        :raise LookupError: no such plugin, or it does not implement ``hook``.
        """
        plugin = self.pm.get_plugin(name)
        impl = self._impl(plugin, hook) if plugin is not None else None
        if impl is None:
            raise LookupError(f"plugin {name!r} is not loaded or has no {hook} hook")
        args = self._context(hook, None, plugin, kwargs)
        return await await_maybe(self._call(hook, name, impl, args))

    def has_owner_hook(self, integration: str, hook: str) -> bool:
        """True if the plugin owning ``integration`` implements ``hook``."""
        owner = self._owners.get(integration)
        return owner is not None and self._impl(owner, hook) is not None

    def call_owner_raw(self, integration: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the owning plugin only and return its raw result (maybe awaitable).

        :raise LookupError: no plugin owns the integration or the owner lacks the hook.
        """
        owner = self._owners.get(integration)
        if owner is None:
            raise LookupError(f"no plugin provides integration {integration!r}")
        impl = self._impl(owner, hook)
        if impl is None:
            raise LookupError(f"the {integration} plugin does not implement {hook}")
        args = self._context(hook, integration, owner, kwargs)
        return self._call(hook, self.pm.get_name(owner) or integration, impl, args)

    async def call_owner(self, integration: str, hook: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the owning plugin only and await its result."""
        return await await_maybe(self.call_owner_raw(integration, hook, **kwargs))

    def _calls(self, hook: str, kwargs: dict[str, Any]) -> Iterator[tuple[str, Callable[[], Any]]]:
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's own call order
            args = self._context(hook, None, impl.plugin, kwargs)
            wanted = {n: args[n] for n in impl.argnames}
            yield (
                impl.plugin_name,
                functools.partial(self._call, hook, impl.plugin_name, impl.function, wanted),
            )

    def broadcast_sync(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call a synchronous ``hook`` on every implementation, isolating each.

        :return: (plugin name, result) pairs; a raising implementation is logged and skipped.
        """
        results: list[tuple[str, Any]] = []
        for name, call in self._calls(hook, kwargs):
            try:
                results.append((name, call()))
            except Exception:
                log.exception("plugin hook raised", hook=hook, plugin=name)
        return results

    async def broadcast(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call ``hook`` on every implementation, awaiting each and isolating each.

        :return: (plugin name, result) pairs; a raising implementation is logged and its
            exception is returned in place of a result, while the others still run.
        """
        results: list[tuple[str, Any]] = []
        for name, call in self._calls(hook, kwargs):
            try:
                results.append((name, await await_maybe(call())))
            except Exception as exc:
                log.exception("plugin hook raised", hook=hook, plugin=name)
                results.append((name, exc))
        return results


def _validate_integration(integration: Integration) -> None:
    if not isinstance(integration, Integration):
        raise PluginLoadError(f"register must return an Integration, got {type(integration)!r}")
    if not NAME_RE.match(integration.name):
        raise PluginLoadError(f"integration name {integration.name!r} is not lowercase [a-z0-9_]")
    if not (
        isinstance(integration.settings, type)
        and issubclass(integration.settings, IntegrationSettings)
    ):
        raise PluginLoadError(f"{integration.name}: settings must subclass IntegrationSettings")
    for stream in integration.streams:
        _validate_stream(integration.name, stream)


def _validate_stream(integration: str, stream: Stream) -> None:
    if not NAME_RE.match(stream.name):
        raise PluginLoadError(f"{integration}: stream name {stream.name!r} is not lowercase")
    for column in stream.columns:
        if not NAME_RE.match(column) or column in RESERVED_COLUMNS:
            raise PluginLoadError(f"{integration}.{stream.name}: bad column name {column!r}")
