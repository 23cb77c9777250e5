"""The plugin API is the whole of what plugins see: imports, and the object hooks receive."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from hub import hookimpl
from hub.api import HubAPI
from hub.model import Connection, HealthReport, HealthStatus, Integration
from hub.plugin_api import PluginAPI

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = frozenset({"hub", "hub.api", "hub.model", "hub.errors", "hub.testing"})
SOURCES = sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")])
API_MEMBERS = {name for name in vars(HubAPI) if not name.startswith("_")}


def private_hub_imports(source: str) -> list[str]:
    """The hub modules ``source`` imports that are not the public API."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            if node.module == "hub":  # ``from hub import core`` imports a module too
                found += [
                    f"hub.{alias.name}"
                    for alias in node.names
                    if importlib.util.find_spec(f"hub.{alias.name}") is not None
                ]
    return sorted({name for name in found if name.split(".")[0] == "hub" and name not in PUBLIC})


def test_the_checker_sees_every_way_of_importing_a_private_module():
    source = (
        "import hub.core\nfrom hub.store.runs import Runs\nfrom hub import core, hookimpl\n"
        "from hub.api import HubAPI\nimport hubspot\nfrom . import hub\n"
        "if True:\n    from hub.health import HealthMonitor\n"
    )
    assert private_hub_imports(source) == ["hub.core", "hub.health", "hub.store.runs"]


def test_there_are_plugin_sources_to_check():
    names = {path.name for path in SOURCES}
    assert {"__init__.py", "oauth.py", "sync.py", "health.py", "sandbox.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path: Path):
    assert private_hub_imports(path.read_text()) == []


def test_the_facade_exposes_exactly_the_api():
    exposed = {name for name in dir(PluginAPI) if not name.startswith("_")}
    assert exposed == API_MEMBERS
    assert {"connection_state", "request_sync", "require_admin", "clients", "http"} <= exposed


class Snoop:
    """A plugin that keeps the ``hub`` its hooks receive and reaches past the API."""

    def __init__(self) -> None:
        self.received: list[Any] = []

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="snoop", title="Snoop", default_sync_interval=None)

    @hookimpl
    def startup(self, hub: HubAPI) -> None:
        self.received.append(hub)

    @hookimpl
    async def health(self, connection: Connection, hub: Any) -> HealthReport:
        self.received.append(hub)
        await hub.store.runs.stream_stats(connection.id)  # not in the API
        return HealthReport(HealthStatus.HEALTHY)


async def test_hooks_receive_the_api_without_the_hubs_internals(make_hub):
    snoop = Snoop()
    hub = await make_hub(plugins=[snoop])
    connection = await hub.add_connection("snoop", "one", "One", {}, origin="test")
    report = await hub.health.check(connection.id)
    assert report.status is HealthStatus.ERROR
    assert "AttributeError" in report.message and "store" in report.message
    assert len(snoop.received) == 2
    for received in snoop.received:
        assert isinstance(received, PluginAPI)
        for name in ("store", "engine", "health", "plugins", "scheduler", "settings", "events"):
            assert not hasattr(received, name), name
    assert (await snoop.received[0].connection(connection.id)).id == connection.id


async def test_the_clients_registry_is_read_only_for_plugins(make_hub):
    snoop = Snoop()
    await make_hub(plugins=[snoop])
    registry = snoop.received[0].clients
    assert {name for name in dir(registry) if not name.startswith("_")} == {"client_of", "list"}
    assert await registry.list() == []
    assert await registry.client_of("snoop", "snoop:one", "x") is None
