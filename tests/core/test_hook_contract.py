"""The hook contract: settings arrive in per-integration hooks, ``sync`` has one form, an
authentication failure marks the connection disconnected, and HUB_TRACE_HOOKS traces calls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from hub import hookimpl
from hub.errors import AuthenticationError
from hub.model import (
    Batch,
    Connection,
    ConnectionSpec,
    HealthReport,
    HealthStatus,
    HubEvent,
    Integration,
    IntegrationSettings,
    Stream,
    WebhookEvent,
)
from hub.testing import deliver_webhook
from hub.tracing import summary, traced
from hub.web.keys import HUB
from tests.conftest import ledger_config

API_KEY = "sk-known-api-key-0042"


class KeySettings(IntegrationSettings):
    """[integrations.keyed]"""

    api_key: SecretStr
    region: str = "eu"


class Keyed:
    """Implements every per-integration hook and records the ``settings`` each receives."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            name="keyed",
            title="Keyed",
            settings=KeySettings,
            streams=[Stream("items")],
            default_sync_interval=None,
        )

    @hookimpl
    def configure(self, settings: KeySettings) -> list[ConnectionSpec]:
        self.seen["configure"] = settings
        return [ConnectionSpec("main", "Main", {"api_key": settings.api_key.get_secret_value()})]

    @hookimpl
    def authenticate(self, connection: Connection, settings: KeySettings) -> Connection:
        self.seen["authenticate"] = settings
        return connection

    @hookimpl
    async def sync(
        self, connection: Connection, streams: Sequence[str], settings: KeySettings
    ) -> AsyncIterator[Batch]:
        self.seen["sync"] = settings
        yield Batch("items", [{"id": "1", "region": settings.region}])

    @hookimpl
    def webhook(self, body: bytes, settings: KeySettings) -> list[WebhookEvent]:
        self.seen["webhook"] = settings
        return [WebhookEvent(id=body.decode(), type="ping", data={}, connection_key="main")]

    @hookimpl
    def process(self, event: HubEvent, settings: KeySettings) -> None:
        self.seen["process"] = settings

    @hookimpl
    def health(self, connection: Connection, settings: KeySettings) -> HealthReport:
        self.seen["health"] = settings
        return HealthReport(HealthStatus.HEALTHY, "ok")

    @hookimpl
    def diagnostics(self, connection: Connection, settings: KeySettings) -> dict[str, Any]:
        self.seen["diagnostics"] = settings
        return {"region": settings.region}


KEYED = {"integrations": {"keyed": {"api_key": API_KEY, "region": "us"}}}


async def test_every_per_integration_hook_receives_its_validated_settings(hub_client):
    keyed = Keyed()
    client = await hub_client(plugins=[keyed], config=KEYED)
    hub = client.app[HUB]
    result = await hub.engine.run("keyed:main")
    assert result.state == "succeeded", result.error
    await hub.health.check("keyed:main")
    assert (await client.get("/api/connections/keyed:main/diagnostics")).status == 200
    status, _ = await deliver_webhook(client, "/webhooks/keyed", b"event-1")
    assert status == 200
    expected = hub.settings_for("keyed")
    assert isinstance(expected, KeySettings) and expected.region == "us"
    assert set(keyed.seen) == {
        "configure",
        "authenticate",
        "sync",
        "webhook",
        "process",
        "health",
        "diagnostics",
    }
    assert all(settings is expected for settings in keyed.seen.values()), keyed.seen


class Coroutine(Keyed):
    """``sync`` in the refused form: a coroutine that returns an iterator."""

    @hookimpl
    async def sync(self, connection: Connection) -> AsyncIterator[Batch]:  # type: ignore[override]
        async def batches() -> AsyncIterator[Batch]:
            yield Batch("items", [{"id": "1"}])

        return batches()


async def test_a_sync_that_is_not_an_async_generator_fails_the_run(make_hub):
    hub = await make_hub(plugins=[Coroutine()], config=KEYED)
    result = await hub.engine.run("keyed:main")
    assert (result.state, result.error_class) == ("failed", "plugin")
    assert "async generator" in (result.error or "")


class Refused(Keyed):
    """The provider refuses the credentials during the health check."""

    @hookimpl
    def health(self, connection: Connection) -> HealthReport:
        raise AuthenticationError("the API key was revoked")


async def test_an_authentication_error_from_health_marks_the_connection_disconnected(make_hub):
    hub = await make_hub(plugins=[Refused()], config=KEYED)
    report = await hub.health.check("keyed:main")
    assert report.status is HealthStatus.DISCONNECTED
    assert "the API key was revoked" in report.message
    state = hub.connection_state("keyed:main")
    assert state.health is HealthStatus.DISCONNECTED and state.needs_reauth


async def test_the_example_plugin_raises_on_a_rejected_token(make_hub, ledger):
    hub = await make_hub(config=ledger_config(ledger, api_token="not-the-token"))
    report = await hub.health.check("custom_accounting:default")
    assert report.status is HealthStatus.DISCONNECTED, report


async def test_trace_hooks_logs_every_call_with_redacted_arguments(make_hub, monkeypatch):
    monkeypatch.setenv("HUB_TRACE_HOOKS", "1")
    with structlog.testing.capture_logs() as logs:
        hub = await make_hub(plugins=[Keyed()], config=KEYED)
        await hub.engine.run("keyed:main")
        await hub.health.check("keyed:main")
    calls = [entry for entry in logs if entry["event"] == "hook call"]
    hooks = {entry["hook"] for entry in calls}
    assert {"configure", "startup", "authenticate", "sync", "health"} <= hooks
    for entry in calls:
        assert entry["duration_ms"] >= 0
        assert "hub" not in entry["args"]
    (health,) = [entry for entry in calls if entry["hook"] == "health"]
    assert health["plugin"] == "Keyed"
    assert health["args"]["connection"] == "Connection(keyed:main)"
    assert health["args"]["settings"]["region"] == "us"
    assert health["result"] == "HealthReport"
    assert API_KEY not in repr(logs)


def test_tracing_masks_a_secret_cut_by_the_length_limit():
    """A secret that straddles the limit is masked before the text is cut, never left as a
    prefix too short for the pattern to see."""
    text = "x " * 95 + "sk_live_" + "A" * 24
    assert "sk_live_AA" not in summary(text)
    with structlog.testing.capture_logs() as logs, pytest.raises(ValueError):
        traced("health", "Keyed", {}, lambda: raise_value_error(text))
    assert "sk_live_AA" not in logs[0]["error"]


def test_a_traced_diagnostics_result_shows_key_names_only():
    dump = {"accounts": [{"note": "PIN 4242"}], "token_hint": "abc"}
    with structlog.testing.capture_logs() as logs:
        traced("diagnostics", "Keyed", {}, lambda: dump)
    assert logs[0]["result"] == {"keys": ["accounts", "token_hint"]}
    assert "4242" not in repr(logs)


def raise_value_error(text: str) -> None:
    raise ValueError(text)


async def test_without_trace_hooks_nothing_is_traced(make_hub, monkeypatch):
    monkeypatch.delenv("HUB_TRACE_HOOKS", raising=False)
    with structlog.testing.capture_logs() as logs:
        hub = await make_hub(plugins=[Keyed()], config=KEYED)
        await hub.health.check("keyed:main")
    assert not [entry for entry in logs if entry["event"] == "hook call"]
