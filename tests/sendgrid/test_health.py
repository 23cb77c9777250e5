"""Health and diagnostics: API key valid (GET /v3/scopes), sender verified, last send,
waiting resends, suppression count, SMTP reachable; a refused key disconnects; the dump is
redacted."""

from __future__ import annotations

from hub.model import HealthStatus
from hub.testing import hub_of
from plugins.sendgrid.message import Message, Recipient

from .conftest import running, sg_config


async def the_connection(hub):
    [connection] = await hub.connections("sendgrid")
    return connection


async def test_a_working_key_is_healthy_with_its_checks(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox))
    await running(hub).mailer.suppress([("x@client.test", "550", "bounce")])
    report = await hub.check_health(await the_connection(hub))
    assert report.status is HealthStatus.HEALTHY, report
    checks = {c.name: c for c in report.checks}
    assert checks["API key valid"].ok and checks["may send mail"].ok
    assert checks["sender verified"].ok
    assert checks["suppressions"].detail == "1 addresses"
    assert [r.path for r in sandbox.state.requests] == ["/v3/scopes", "/v3/verified_senders"]


async def test_a_refused_key_disconnects(make_hub, sandbox):
    config = sg_config(sandbox)
    config["integrations"]["sendgrid"]["api_key"] = "SG.revoked"
    hub = await make_hub(config=config)
    report = await hub.check_health(await the_connection(hub))
    assert report.status is HealthStatus.DISCONNECTED


async def test_a_failed_last_send_warns_with_sendgrids_reason(make_hub, sandbox):
    config = sg_config(sandbox, from_email="other@firm.test")
    hub = await make_hub(config=config)
    mailer = running(hub).mailer
    await mailer.send(
        Message("notification", "s", "t", (Recipient("a@client.test"),), template_id="d-nope")
    )
    report = await hub.check_health(await the_connection(hub))
    assert report.status is HealthStatus.WARNING
    assert "last send: failed" in report.message and "not a valid template ID" in report.message


async def test_an_unreachable_smtp_server_is_an_error_when_it_is_the_only_channel(
    make_hub, sandbox
):
    config = sg_config(sandbox, smtp={"host": "127.0.0.1", "port": 9, "timeout": 2})
    del config["integrations"]["sendgrid"]["api_key"]
    hub = await make_hub(config=config)
    report = await hub.check_health(await the_connection(hub))
    assert report.status is HealthStatus.ERROR
    assert not {c.name: c for c in report.checks}["SMTP reachable"].ok


async def test_diagnostics_are_redacted(hub_client, sandbox):
    client = await hub_client(config=sg_config(sandbox))
    connection = await the_connection(hub_of(client))
    response = await client.get(f"/api/connections/{connection.id}/diagnostics")
    text = await response.text()
    assert response.status == 200
    assert sandbox.state.config.api_key not in text
    dump = (await response.json())["plugin"]
    assert dump["channels"] == ["sendgrid"] and dump["sends"]["sent"] == 0
    assert dump["api_host"] == sandbox.base_url
