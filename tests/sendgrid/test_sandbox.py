"""The sandbox answers in SendGrid's shapes: 202 + X-Message-Id, 400 errors, 401, and 429
with X-RateLimit-* past its limit."""

from __future__ import annotations

import aiohttp

from plugins.sendgrid.sandbox import SandboxConfig, start_sandbox

BODY = {
    "personalizations": [{"to": [{"email": "a@client.test"}]}],
    "from": {"email": "hub@demo.test"},
    "subject": "s",
    "content": [{"type": "text/plain", "value": "t"}],
}


async def test_sendgrid_answer_shapes():
    sandbox = await start_sandbox(SandboxConfig(rate_limit=2, rate_window=3600))
    auth = {"Authorization": f"Bearer {sandbox.state.config.api_key}"}
    url = f"{sandbox.base_url}/v3/mail/send"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=BODY, headers=auth) as ok:
                assert ok.status == 202 and ok.headers["X-Message-Id"]
                assert ok.headers["X-RateLimit-Remaining"] == "1"
            bad = {**BODY, "template_id": "d-unknown"}
            async with session.post(url, json=bad, headers=auth) as refused:
                error = (await refused.json())["errors"][0]
                assert refused.status == 400 and error["field"] == "template_id"
                assert set(error) == {"message", "field", "help"}
            async with session.post(url, json=BODY, headers={"Authorization": "Bearer x"}) as no:
                assert no.status == 401
            async with session.post(url, json=BODY, headers=auth) as throttled:
                assert throttled.status == 429
                assert throttled.headers["X-RateLimit-Limit"] == "2"
                assert throttled.headers["X-RateLimit-Remaining"] == "0"
                assert int(throttled.headers["X-RateLimit-Reset"]) > 0
    finally:
        await sandbox.close()


async def test_the_demo_hook_points_a_working_hub_at_its_sandbox(make_hub):
    import contextlib

    import plugins.sendgrid as plugin
    from hub.model import HealthStatus

    async with contextlib.AsyncExitStack() as stack:
        settings = await plugin.demo(stack)
        hub = await make_hub(config={"integrations": settings})
        [connection] = await hub.connections("sendgrid")
        report = await hub.check_health(connection)
        assert report.status is HealthStatus.HEALTHY, report
