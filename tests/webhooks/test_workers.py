"""Ingest workers (``webhooks.workers``): the daemon and its workers share the port; webhooks
stored by a worker are delivered by the daemon, subscriptions created on the daemon reach the
workers, metrics add up, other requests are forwarded, a killed worker is replaced, and the
workers go when the daemon goes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon, alive, query
from tests.webhooks.standard_webhooks_ref import reference_verify

SECRET = "workers-secret"
pytestmark = pytest.mark.slow
CONFIG = f"""
[webhooks]
workers = 2
[webhooks.outbound]
allow_private = true
[webhooks.generic.w]
secret = "{SECRET}"
"""


def start(folder: Path, port: int = 0) -> Daemon:
    return Daemon(folder, CONFIG, port=port)


async def post_webhooks(url: str, ids: list[str]) -> list[int]:
    """Post one signed webhook per id, each on a new connection (the kernel spreads
    connections, not requests, over the processes)."""
    connector = aiohttp.TCPConnector(force_close=True, limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(event_id: str) -> int:
            body = f'{{"id": "{event_id}"}}'.encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-Signature": signature, "webhook-id": event_id}
            async with session.post(f"{url}/webhooks/generic/w", data=body, headers=headers) as r:
                return r.status

        return list(await asyncio.gather(*(post(event_id) for event_id in ids)))


async def workers_of(daemon: Daemon, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
    status, body = await daemon.api(session, "GET", "/api/status")
    assert status == 200
    workers: list[dict[str, Any]] = body["hub"]["ingest_workers"]
    return workers


async def accepted_is(daemon: Daemon, session: aiohttp.ClientSession, expected: int) -> bool:
    """Whether ``/metrics`` counts ``expected`` accepted webhooks, workers' included."""
    headers = {"Authorization": "Bearer daemon-test-token"}
    async with session.get(f"{daemon.url}/metrics", headers=headers) as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hub_webhooks_total" and sample.labels["outcome"] == "accepted":
                return sample.value == expected
    return False


async def eventually(check: Any, timeout: float = 20.0) -> Any:
    """Poll ``check`` (sync or async) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    calls: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append((dict(request.headers), await request.read()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"http://127.0.0.1:{server.port}/hook", calls


async def test_workers_store_what_the_daemon_delivers_and_share_everything_else(
    tmp_path, reap_daemons, receiver
):
    hook_url, calls = receiver
    daemon = start(tmp_path)
    async with aiohttp.ClientSession() as session:
        await daemon.ready(session, "/readyz")  # ready once the workers listen
        workers = await workers_of(daemon, session)
        assert [w["state"] for w in workers] == ["running", "running"]
        pids = {w["pid"] for w in workers}
        assert len(pids) == 2 and daemon.proc.pid not in pids and all(map(alive, pids))
        warned = "more ingest workers than spare cores" in (tmp_path / "daemon.log").read_text()
        # another hub (another database) cannot join the port the workers share
        (tmp_path / "other").mkdir()
        intruder = start(tmp_path / "other", daemon.port)
        assert intruder.proc.wait(timeout=60) == 1
        assert "cannot listen" in (tmp_path / "other" / "daemon.log").read_text()
        assert warned == ((os.cpu_count() or 1) <= 2)

        status, created = await daemon.api(
            session, "POST", "/api/subscriptions", json={"url": hook_url, "events": ["generic.*"]}
        )
        assert status == 201, created
        calls.clear()  # the test ping
        ids = [f"evt-{n}" for n in range(150)]
        assert await post_webhooks(daemon.url, ids) == [200] * len(ids)

        # every process took some connections: ids end with the storing process's tag
        tags = {row[0] for row in query(daemon.db, "SELECT id % 1000 FROM webhook_requests")}
        assert {1, 2} <= tags, tags
        # events stored by workers were routed to the new subscription and delivered
        await eventually(lambda: len(calls) >= len(ids))
        delivered = sorted(orjson.loads(body)["data"]["id"] for _, body in calls)
        assert delivered == sorted(ids)
        headers, body = calls[0]
        reference_verify(created["secret"], headers, body)
        # the workers' counts are in the daemon's metrics
        await eventually(lambda: accepted_is(daemon, session, len(ids)), timeout=10)

        headers = {"Authorization": "Bearer daemon-test-token"}
        async with session.get(f"{daemon.url}/admin", headers=headers) as response:
            assert "2 of 2 ingest workers running" in await response.text()

        # everything else works through any process: forwarded by workers to the daemon
        fresh = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=fresh) as other:
            for _ in range(24):
                status, _ = await daemon.api(other, "GET", "/api/status")
                assert status == 200
                async with other.get(f"{daemon.url}/api/status") as response:
                    assert response.status == 401
                    assert "admin token" in (await response.json())["error"]
                async with other.get(f"{daemon.url}/webhooks/generic/w") as response:
                    assert response.status == 405 and response.headers["Allow"] == "POST"

        # a worker killed outright is replaced; its counts stay in the metrics
        victim = workers[0]
        os.kill(victim["pid"], signal.SIGKILL)

        async def replaced() -> bool:
            now = (await workers_of(daemon, session))[0]
            return bool(now["state"] == "running" and now["pid"] != victim["pid"])

        await eventually(replaced)
        assert (await workers_of(daemon, session))[0]["restarts"] == 1
        more = [f"more-{n}" for n in range(30)]
        assert await post_webhooks(daemon.url, more) == [200] * len(more)
        total = len(ids) + len(more)
        await eventually(lambda: accepted_is(daemon, session, total), timeout=10)

        # a worker that cannot confirm new subscriptions (frozen) is replaced, not trusted
        frozen = (await workers_of(daemon, session))[1]
        os.kill(frozen["pid"], signal.SIGSTOP)
        status, _ = await daemon.api(
            session, "POST", "/api/subscriptions", json={"url": hook_url, "events": ["x.*"]}
        )
        assert status == 201

        async def thawed() -> bool:
            now = (await workers_of(daemon, session))[1]
            return bool(now["state"] == "running" and now["pid"] != frozen["pid"])

        await eventually(thawed)
        assert not alive(frozen["pid"])

        current = {w["pid"] for w in await workers_of(daemon, session)}
    assert daemon.stop() == 0
    assert not any(map(alive, current))  # the daemon stopped its workers


async def test_workers_leave_when_the_daemon_is_killed(tmp_path, reap_daemons):
    """...and the next daemon gets the port at once, though the killed processes' connections
    leave it with connections in TIME_WAIT."""
    daemon = start(tmp_path)
    async with aiohttp.ClientSession() as session:  # keep-alive: open through the kill
        await daemon.ready(session, "/readyz")
        pids = [w["pid"] for w in await workers_of(daemon, session)]
        daemon.kill()
        deadline = time.monotonic() + 20
        while any(map(alive, pids)):
            assert time.monotonic() < deadline, "orphaned ingest workers kept running"
            await asyncio.sleep(0.05)
        restarted = start(tmp_path, daemon.port)
        await restarted.ready(session, "/readyz")
    assert restarted.stop() == 0
