"""The suppression reconcile: SendGrid's lists read on the sync schedule, the local list
aligned with them (additions and removals), event suppressions left alone."""

from __future__ import annotations

from hub.testing import sync_records

from .conftest import running, sg_config


async def test_sendgrids_lists_are_synced_and_reconciled(make_hub, sandbox):
    for n in range(1203):
        sandbox.state.add_suppression("bounces", f"b{n}@client.test", "550")
    sandbox.state.add_suppression("spam_reports", "spam@client.test")
    hub = await make_hub(config=sg_config(sandbox))
    mailer = running(hub).mailer
    await mailer.suppress([("event@client.test", "dropped", "dropped")])
    records = await sync_records(hub, "sendgrid")
    assert len(records["bounces"]) == 1203 and list(records["spam_reports"]) == ["spam@client.test"]
    assert await mailer.count("suppressions") == 1205
    pages = [r for r in sandbox.state.requests if r.path == "/v3/suppression/bounces"]
    assert [p.query["offset"] for p in pages] == ["0", "500", "1000"]

    del sandbox.state.suppressions["bounces"]["b0@client.test"]
    sandbox.state.suppressions["spam_reports"].clear()
    records = await sync_records(hub, "sendgrid")
    assert "b0@client.test" not in records["bounces"] and records["spam_reports"] == {}
    assert await mailer.count("suppressions") == 1203  # 1,202 bounces and the event's
    assert await mailer.tables.get("suppressions", "event@client.test") is not None
    assert await mailer.tables.get("suppressions", "b0@client.test") is None
