"""pytest fixtures for plugin authors (installed as a pytest plugin with the hub).

    async def test_my_sync(make_hub):
        hub = await make_hub(plugins=[my_plugin], config={"integrations": {"mine": {...}}})
        records = await sync_records(hub, "mine")
        assert len(records["invoices"]) == 3

    async def test_my_route(hub_client):
        client = await hub_client(plugins=[my_plugin])
        response = await client.get("/api/status")   # the admin token is sent for you

Fixtures: ``hub_config`` (settings factory on a temporary database), ``make_hub`` (a started
hub with your plugins registered; stopped after the test), ``hub_client`` (an aiohttp test
client of the full app, authorised with the admin token). Helpers: :func:`sync_records`
(run a sync and return the stored live records per stream), :func:`stored_records`,
:func:`hub_of` (the hub behind a ``hub_client`` client),
:func:`generic_signature` (sign a body like a generic sender), :func:`deliver_webhook`
(post a webhook and wait until its handlers ran) and :func:`most_in_window` (check a rate
limit against recorded request times).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import socket
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlite_utils

from hub.config import HubSettings, deep_merge, load_settings
from hub.core import Hub
from hub.store.records import table_name
from hub.store.runs import ACTIVE_RUN_STATES
from hub.web.keys import HUB

ADMIN_TOKEN = "test-admin-token-of-32-characters"  # noqa: S105 (a fixed token for tests)

SettingsFactory = Callable[..., HubSettings]
HubFactory = Callable[..., Awaitable[Hub]]


@pytest.fixture
def hub_config(tmp_path: Path) -> SettingsFactory:
    """A factory of settings on a temporary database: ``hub_config({"sync": {...}})``."""

    def make(config: dict[str, Any] | None = None) -> HubSettings:
        base: dict[str, Any] = {
            "store": {"path": str(tmp_path / "hub.db")},
            "admin": {"token": ADMIN_TOKEN},
            "plugins": {"dir": None},
        }
        return load_settings(None, deep_merge(base, config or {}), read_default=False)

    return make


def build_hub(
    settings: HubSettings, plugins: Iterable[object] = (), builtins: Iterable[str] | None = None
) -> Hub:
    """A hub with ``plugins`` registered (named after their ``__name__``), not yet started."""
    hub = Hub(settings, builtins) if builtins is not None else Hub(settings)
    hub.plugins.load(settings.plugins, hub._builtins)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        hub.plugins.add(plugin, name.rsplit(".", 1)[-1], origin="test")
    hub.validate_integrations()
    hub.loaded = True
    return hub


@pytest.fixture
async def make_hub(hub_config: SettingsFactory) -> AsyncIterator[HubFactory]:
    """A factory of started hubs: ``await make_hub(plugins=[...], config={...})``."""
    started: list[Hub] = []

    async def make(
        plugins: Iterable[object] = (),
        config: dict[str, Any] | None = None,
        builtins: Iterable[str] | None = None,
    ) -> Hub:
        hub = build_hub(hub_config(config), plugins, builtins)
        await hub.start()
        started.append(hub)
        return hub

    yield make
    for hub in reversed(started):
        await hub.stop()


@pytest.fixture
async def hub_client(
    hub_config: SettingsFactory, aiohttp_client: Any
) -> Callable[..., Awaitable[Any]]:
    """A factory of aiohttp test clients of the whole app, sending the admin token."""
    from hub.web.app import create_app

    async def make(
        plugins: Iterable[object] = (),
        config: dict[str, Any] | None = None,
        builtins: Iterable[str] | None = None,
        authorized: bool = True,
        listen: bool = False,
    ) -> Any:
        """:param listen: serve on a free port that is also ``server.port``, so that
        ``hub.public_url`` is this client's own address (for flows that leave the hub and
        come back to it, such as OAuth in a browser)."""
        port = _free_port() if listen else 0
        if listen:
            config = deep_merge(config or {}, {"server": {"port": port}})
        settings = hub_config(config)
        hub = build_hub(settings, plugins, builtins)
        app = create_app(settings, hub=hub, schedule=False)
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if authorized else {}
        return await aiohttp_client(app, headers=headers, server_kwargs={"port": port})

    return make


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def hub_of(client: Any) -> Hub:
    """The hub behind a client from ``hub_client`` (for :func:`stored_records` and the like)."""
    hub: Hub = client.app[HUB]
    return hub


async def wait_for_run(client: Any, run_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``GET /api/runs/{run_id}`` through ``client`` until the run is no longer running."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run: dict[str, Any] = await (await client.get(f"/api/runs/{run_id}")).json()
        if run["state"] not in ACTIVE_RUN_STATES:
            return run
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"run {run_id} still running after {timeout}s")
        await asyncio.sleep(0.02)


async def sync_records(
    hub: Hub, integration: str, connection: str | None = None, full: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run a sync of one connection (the integration's only one by default) and return its
    live records: ``{stream: {id: record}}``. Fails the test if the sync did not succeed."""
    if connection is None:
        connections = await hub.connections(integration)
        assert len(connections) == 1, f"{integration} has {len(connections)} connections"
        connection = connections[0].id
    result = await hub.engine.run(connection, full=full, trigger="test")
    assert result.state == "succeeded", f"sync {result.state}: {result.error}"
    return await stored_records(hub, integration, connection)


async def stored_records(
    hub: Hub, integration: str, connection: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """The live (not tombstoned) records of every stream of a connection."""

    def read(db: sqlite_utils.Database) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for stream in hub.plugins.integrations[integration].streams:
            name = table_name(integration, stream.name)
            if name not in db.table_names():
                out[stream.name] = {}
                continue
            out[stream.name] = {
                row[0]: orjson.loads(row[1])
                for row in db.execute(
                    f"SELECT id, data FROM [{name}] "  # noqa: S608 (validated identifier)
                    "WHERE connection_id = ? AND deleted_at IS NULL",
                    [connection],
                ).fetchall()
            }
        return out

    return await hub.store.db.read(read)


async def client_links(hub: Hub, integration: str) -> dict[str, tuple[int, str]]:
    """The clients registry's links of ``integration``'s records: ``{provider id: (client id,
    matched_by)}``."""
    return {
        link["provider_id"]: (client["id"], link["matched_by"])
        for client in await hub.store.clients.list()
        for link in client["links"]
        if link["integration"] == integration
    }


def most_in_window(times: Iterable[float], period: float) -> int:
    """The most of ``times`` (seconds) that any window ``[t, t + period)`` holds."""
    ordered = sorted(times)
    return max((bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0)


def generic_signature(secret: str, body: bytes, encoding: str = "hex") -> str:
    """The signature a ``[webhooks.generic.<sender>]`` sender must put in its header."""
    digest = hmac.digest(secret.encode(), body, "sha256")
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


async def deliver_webhook(
    client: Any, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST a webhook through ``client`` (from ``hub_client``), then wait until the dispatcher
    has run every handler that is due, so a test can assert what processing did.

    :return: the HTTP status and the JSON answer.
    """
    response = await client.post(path, data=body, headers=headers or {})
    answer = await response.json()
    await client.app[HUB].dispatcher.drain()
    return response.status, answer
