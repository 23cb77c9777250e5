"""Health and diagnostics: key checks, mode, webhook secrets, last webhook, counts, redaction."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import web

from hub.model import HealthStatus
from hub.testing import hub_of
from tests.stripe.conftest import KEY as KEY_OF_SANDBOX

KEY = "rk_test_health123"
CONNECTION = "stripe:default"


@pytest.fixture
async def lists(aiohttp_server) -> dict[str, Any]:
    """A scripted Stripe answering list endpoints from ``lists[path]`` (objects with a
    ``status``), filtered by a ``status`` query; ``lists["_key_refused"]`` answers 401."""
    served: dict[str, Any] = {"_key_refused": False}

    async def answer(request: web.Request) -> web.Response:
        if served["_key_refused"]:
            body = {"error": {"type": "invalid_request_error", "message": "Invalid API Key"}}
            return web.json_response(body, status=401)
        data = served.get(request.path, [])
        wanted = request.query.get("status")
        if wanted and wanted != "all":
            data = [item for item in data if item["status"] == wanted]
        return web.json_response(
            {"object": "list", "data": data, "has_more": False, "url": request.path}
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = await aiohttp_server(app)
    served["_base_url"] = str(server.make_url("")).rstrip("/")
    return served


def config(lists: dict[str, Any], **extra: Any) -> dict[str, Any]:
    section = {"secret_key": KEY, "base_url": lists["_base_url"], "max_network_retries": 0}
    return {"integrations": {"stripe": section | extra}}


async def test_health_reports_mode_secrets_counts_and_warns_without_secrets(make_hub, lists):
    lists["/v1/subscriptions"] = [
        {"id": "sub_1", "status": "past_due"},
        {"id": "sub_2", "status": "active"},
        {"id": "sub_3", "status": "past_due"},
    ]
    lists["/v1/disputes"] = [
        {"id": "dp_1", "status": "needs_response"},
        {"id": "dp_2", "status": "won"},
    ]
    hub = await make_hub(config=config(lists))
    (connection,) = await hub.connections("stripe")
    report = await hub.check_health(connection)
    checks = {check.name: (check.ok, check.detail) for check in report.checks}
    assert report.status == HealthStatus.WARNING and "webhook_secrets" in report.message
    assert checks["key present"] == (True, "restricted")
    assert checks["mode"] == (True, "test")
    assert checks["webhook secrets configured"] == (False, "0 secret(s)")
    assert checks["last verified webhook"] == (True, "none yet")
    assert checks["past-due subscriptions"] == (True, "2")
    assert checks["open disputes"] == (True, "1")

    configured = await make_hub(config=config(lists, webhook_secrets=["whsec_x"]))
    (connection,) = await configured.connections("stripe")
    assert (await configured.check_health(connection)).status == HealthStatus.HEALTHY


async def test_a_refused_key_reads_disconnected(make_hub, lists):
    lists["_key_refused"] = True
    hub = await make_hub(config=config(lists, webhook_secrets=["whsec_x"]))
    (connection,) = await hub.connections("stripe")
    report = await hub.check_health(connection)
    assert report.status == HealthStatus.DISCONNECTED
    state = hub.connection_state(connection.id)
    assert state.needs_reauth and state.last_error is not None
    assert "secret_key" in state.last_error.advice


async def test_diagnostics_are_redacted(hub_client, lists):
    client = await hub_client(config=config(lists, webhook_secrets=["whsec_diagnostics"]))
    response = await client.get(f"/api/connections/{CONNECTION}/diagnostics")
    assert response.status == 200
    text = await response.text()
    assert KEY not in text and "whsec_diagnostics" not in text
    dump = orjson.loads(text)
    facts = dump.get("plugin", dump)
    assert facts["mode"] == "test" and facts["webhook_signers"] == 1
    assert facts["api"] == {"reachable": True} and facts["key_stored"] is True
    hub = hub_of(client)
    assert hub.connection_state(CONNECTION).needs_reauth is False


async def test_counts_of_streams_not_synced_are_not_asked(make_hub, stripe_sandbox):
    section = {
        "secret_key": KEY_OF_SANDBOX,
        "webhook_secrets": ["whsec_x"],
        "base_url": stripe_sandbox.base_url,
        "streams": ["customers", "prices"],
    }
    hub = await make_hub(config={"integrations": {"stripe": section}})
    (connection,) = await hub.connections("stripe")
    report = await hub.check_health(connection)
    checks = {check.name: check.detail for check in report.checks}
    assert report.status == HealthStatus.HEALTHY, report
    assert checks["past-due subscriptions"] == checks["open disputes"] == "not synced"
