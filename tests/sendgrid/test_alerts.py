"""Alert e-mails: one per state change to the admins, listing every failing connection with
a link, coalesced under a burst (at most one per connection per window), a recovery mail, and
never lost while SendGrid is down."""

from __future__ import annotations

import time

from hub.model import Alert, HealthStatus

from .conftest import ADMINS, running, sg_config

BAD, GOOD = HealthStatus.ERROR, HealthStatus.HEALTHY


def alert(n: int, status: HealthStatus, connection: str = "quickbooks:1", **extra) -> Alert:
    return Alert(
        id=n,
        integration=connection.split(":")[0],
        connection_id=connection,
        connection_title=f"Company {connection}",
        status=status,
        previous=None,
        message=f"token refused ({n})" if status is not GOOD else "reachable",
        **extra,
    )


def mails(sandbox):
    return [s["body"] for s in sandbox.state.sends]


def recipients(body):
    return [p["to"][0]["email"] for p in body["personalizations"]]


async def test_a_failure_mails_the_admins_with_each_failing_connection_and_its_link(
    make_hub, sandbox
):
    hub = await make_hub(config=sg_config(sandbox))
    await hub.health.deliver(alert(1, HealthStatus.WARNING, "stripe:acct"))
    await hub.health.deliver(alert(2, HealthStatus.DISCONNECTED, "quickbooks:9130"))
    first, second = mails(sandbox)
    assert first["subject"] == "[WARNING] Integration Warnings - Willow & Co"
    assert second["subject"] == "[CRITICAL] Integration Failures - Willow & Co"
    assert recipients(second) == ADMINS
    text = second["content"][0]["value"]
    assert text.index("quickbooks:9130") < text.index("stripe:acct")  # worst first
    assert "token refused (2)" in text and "token refused (1)" in text
    assert "https://hub.firm.test/admin#connection-quickbooks%3A9130" in text


async def test_links_use_the_listen_address_without_a_public_url(make_hub, sandbox):
    config = sg_config(sandbox)
    config["server"] = {"host": "10.0.0.5", "port": 8800}
    hub = await make_hub(config=config)
    await hub.health.deliver(alert(1, BAD))
    text = mails(sandbox)[0]["content"][0]["value"]
    assert "http://10.0.0.5:8800/admin#connection-quickbooks%3A1" in text


async def test_recovery_is_mailed_once_healthy_again(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, alert_min_interval=0))
    mailer = running(hub).alerts
    await mailer.on_alert(alert(1, BAD))
    await mailer.on_alert(alert(2, GOOD))
    assert [m["subject"] for m in mails(sandbox)] == [
        "[CRITICAL] Integration Failures - Willow & Co",
        "[RESOLVED] Integrations Healthy - Willow & Co",
    ]
    assert "HEALTHY" in mails(sandbox)[1]["content"][0]["value"]


async def test_a_burst_of_alternating_alerts_sends_one_mail_then_one_summary(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, alert_min_interval=600))
    runtime = running(hub)
    for n in range(40):
        await runtime.alerts.on_alert(alert(n, BAD if n % 2 == 0 else GOOD))
    assert len(mails(sandbox)) == 1
    await runtime.mailer.tick()  # the window has not ended: nothing more
    assert len(mails(sandbox)) == 1
    runtime.mailer.clock = lambda: time.time() + 601
    await runtime.mailer.tick()
    summary = mails(sandbox)[1]
    assert summary["subject"] == "[RESOLVED] Integrations Healthy - Willow & Co"
    assert "changed state 39 times since the last e-mail" in summary["content"][0]["value"]
    await runtime.mailer.tick()
    assert len(mails(sandbox)) == 2


async def test_reminders_pass_through_the_window_and_say_so(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, alert_min_interval=60))
    runtime = running(hub)
    await runtime.alerts.on_alert(alert(1, BAD))
    await runtime.alerts.on_alert(alert(1, BAD, reminder=True))
    assert len(mails(sandbox)) == 1
    runtime.mailer.clock = lambda: time.time() + 61
    await runtime.alerts.on_alert(alert(1, BAD, reminder=True))
    assert mails(sandbox)[1]["subject"].endswith("(reminder)")


async def test_an_alert_while_sendgrid_is_down_is_delivered_by_the_next_pass(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, request_attempts=1))
    runtime = running(hub)
    sandbox.state.fail_next(503, count=1)
    await runtime.alerts.on_alert(alert(1, BAD))
    assert not sandbox.state.sends
    [kept] = await runtime.mailer.tables.query("sends", "kind = 'alert'")
    assert kept["status"] == "retrying"
    runtime.mailer.clock = lambda: time.time() + 120
    await runtime.mailer.tick()
    assert mails(sandbox)[0]["subject"].startswith("[CRITICAL]")


async def test_no_admins_no_alert_mail(make_hub, sandbox):
    hub = await make_hub(config=sg_config(sandbox, alert_recipients=[]))
    await hub.health.deliver(alert(1, BAD))
    assert not sandbox.state.requests


async def test_the_alert_template_gets_the_items_as_data(make_hub, sandbox):
    config = sg_config(sandbox, templates={"integration_alert": "d-alert"})
    hub = await make_hub(config=config)
    await hub.health.deliver(alert(1, BAD))
    [body] = mails(sandbox)
    data = body["personalizations"][0]["dynamic_template_data"]
    assert data["severity"] == "CRITICAL" and data["firm"] == "Willow & Co"
    assert data["items"][0]["connection"] == "quickbooks:1"
