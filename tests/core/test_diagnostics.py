"""Diagnostics dumps: served per connection and by ``check --verbose``, never with a secret."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hub import hookimpl
from hub.model import Connection, Integration
from hub.store import Store
from hub.web.keys import HUB
from plugins.quickbooks.sandbox import RunningSandbox, start_sandbox
from tests.quickbooks.conftest import sandbox_config

REALM = "4620816365000000001"
QB = f"quickbooks:{REALM}"
LEDGER = "custom_accounting:default"
SETTINGS = {
    "quickbooks": {
        "client_id": "known-client-id",
        "client_secret": "KNOWN-client-secret-1111",
        "webhook_verifier_token": "KNOWN-verifier-2222",
        "retry_base_delay": 0.01,
    },
    "custom_accounting": {
        "api_token": "KNOWN-ledger-token-3333",
        "webhook_secret": "KNOWN-ledger-webhook-4444",
    },
}
CREDENTIALS = {
    "realm_id": REALM,
    "access_token": "KNOWN-access-token-5555",
    "refresh_token": "KNOWN-refresh-token-6666",
    "expires_at": time.time() + 3600,
    "connected_at": time.time(),
}
SECRETS = [
    "KNOWN-client-secret-1111",
    "KNOWN-verifier-2222",
    "KNOWN-ledger-token-3333",
    "KNOWN-ledger-webhook-4444",
    "KNOWN-access-token-5555",
    "KNOWN-refresh-token-6666",
]


@pytest.fixture
async def intuit() -> AsyncIterator[RunningSandbox]:
    """The QuickBooks sandbox (it refuses the known tokens: the dump reports errors)."""
    running = await start_sandbox(sandbox_config())
    yield running
    await running.close()


def config_for(intuit: RunningSandbox, ledger: Any) -> dict[str, Any]:
    """Every built-in's secret settings set to known values, pointing at the sandboxes."""
    return {
        "integrations": {
            "quickbooks": {
                **SETTINGS["quickbooks"],
                "base_url": intuit.base_url,
                "oauth_base_url": intuit.oauth_base_url,
            },
            "custom_accounting": {**SETTINGS["custom_accounting"], "base_url": ledger.base_url},
        }
    }


def assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"leaked {leaked}"


async def test_the_dump_of_every_built_in_holds_no_secret(hub_client, intuit, ledger):
    client = await hub_client(config=config_for(intuit, ledger))
    hub = client.app[HUB]
    await hub.add_connection("quickbooks", REALM, "Known", dict(CREDENTIALS), origin="oauth")
    for connection_id in (QB, LEDGER):
        response = await client.get(f"/api/connections/{connection_id}/diagnostics")
        assert response.status == 200
        text = await response.text()
        assert_no_secret(text)
        dump = await response.json()
        assert dump["connection"]["id"] == connection_id
        assert "error" not in dump["plugin"], dump["plugin"]
    qb = await (await client.get(f"/api/connections/{QB}/diagnostics")).json()
    assert qb["connection"]["stored_fields"] == sorted(CREDENTIALS)
    assert qb["plugin"]["tokens_stored"] == ["access_token", "refresh_token"]
    assert qb["plugin"]["access_token_expires_at"]
    assert qb["plugin"]["api"]["reachable"] is False  # the sandbox refuses the known tokens


async def test_diagnostics_needs_the_admin_and_a_known_connection(hub_client):
    client = await hub_client()
    assert (await client.get("/api/connections/nope:1/diagnostics")).status == 404
    anonymous = await hub_client(authorized=False)
    assert (await anonymous.get("/api/connections/nope:1/diagnostics")).status == 401


class Leaky:
    """Quotes its connection's secrets under innocent keys and inside text."""

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="leaky",
            title="Leaky",
            default_sync_interval=None,
            secret_fields=frozenset({"pin"}),
        )

    @hookimpl
    def diagnostics(self, connection: Connection) -> dict[str, Any]:
        secret = connection.credentials["pin"]
        return {
            "note": f"we sent pin {secret} to the API",
            "nested": [{"value": secret}],
            "pin": secret,
            "visible": "plain text stays",
        }


async def test_secret_values_are_masked_wherever_a_plugin_puts_them(hub_client):
    client = await hub_client(plugins=[Leaky()])
    hub = client.app[HUB]
    await hub.add_connection("leaky", "one", "One", {"pin": "739184-secret"}, origin="test")
    text = await (await client.get("/api/connections/leaky:one/diagnostics")).text()
    assert "739184-secret" not in text
    assert "plain text stays" in text


async def test_check_verbose_prints_every_dump_without_a_secret(tmp_path, intuit, ledger):
    store = Store(tmp_path / "hub.db")
    await store.connections.upsert("quickbooks", REALM, "Known", dict(CREDENTIALS), "oauth")
    store.close()
    lines = [f'[store]\npath = "{tmp_path / "hub.db"}"']
    for name, section in config_for(intuit, ledger)["integrations"].items():
        lines.append(f"[integrations.{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in section.items()]
    config = tmp_path / "hub.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "check",
        "--verbose",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await proc.communicate())[0].decode()
    assert f"diagnostics of {QB}:" in output, output
    assert f"diagnostics of {LEDGER}:" in output
    assert '"tokens_stored"' in output and '"api_token_stored"' in output
    assert_no_secret(output)
