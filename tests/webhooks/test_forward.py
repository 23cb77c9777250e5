"""The ingest worker's forwarding of non-webhook requests to the daemon's Unix socket: the
answer comes back unchanged and nothing is kept, added or followed on the way."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.web.forward import Forwarder

BIG = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[web.Request], list[bytes]]]:
    """A stand-in daemon on a Unix socket; records each request and its body."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        bodies.append(await request.read())
        if request.path == "/login":
            response = web.HTTPFound("/admin")
            response.set_cookie("session", "s1")
            response.set_cookie("theme", "dark")
            raise response
        if request.path == "/big":
            stream = web.StreamResponse()
            stream.content_type = "application/octet-stream"
            await stream.prepare(request)
            for start in range(0, len(BIG), 100_000):
                await stream.write(BIG[start : start + 100_000])
            return stream
        return web.json_response({"ok": True}, headers={"X-Upstream": "yes"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "daemon.sock")
        await web.UnixSite(runner, path).start()
        yield path, seen, bodies
        await runner.cleanup()


async def forwarding_client(aiohttp_client: Any, socket_path: str) -> Any:
    forwarder = Forwarder(socket_path)
    await forwarder.start()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forwarder.forward)
    app.on_cleanup.append(lambda _: forwarder.close())
    return await aiohttp_client(app)


async def test_method_path_query_headers_and_body_pass_unchanged(aiohttp_client, upstream):
    path, seen, bodies = upstream
    client = await forwarding_client(aiohttp_client, path)
    response = await client.post(
        "/api/x%2Fy?b=2&a=1",
        data=b"raw \x00 bytes",
        headers={
            "Host": "hub.firm.example:8700",
            "X-Custom": "1",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "private to this hop",
        },
        skip_auto_headers=["Content-Type"],
    )
    assert response.status == 200 and response.headers["X-Upstream"] == "yes"
    request = seen[0]
    assert (request.method, request.raw_path) == ("POST", "/api/x%2Fy?b=2&a=1")
    assert request.headers["Host"] == "hub.firm.example:8700"
    assert request.headers["X-Custom"] == "1"
    assert "X-Hop" not in request.headers  # named by Connection: hop-by-hop
    assert "Content-Type" not in request.headers  # nothing the client did not send
    assert bodies == [b"raw \x00 bytes"]


async def test_redirects_and_cookies_are_passed_on_never_followed_or_kept(aiohttp_client, upstream):
    path, seen, _ = upstream
    client = await forwarding_client(aiohttp_client, path)
    response = await client.post("/login", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/admin"
    assert sorted(response.headers.getall("Set-Cookie")) == [
        "session=s1; Path=/",
        "theme=dark; Path=/",
    ]
    client.session.cookie_jar.clear()
    await client.get("/next")
    assert [r.path for r in seen] == ["/login", "/next"]  # the redirect was not followed
    assert "Cookie" not in seen[1].headers  # another client gets nobody's cookies


async def test_a_large_answer_streams_through_intact(aiohttp_client, upstream):
    path, _, _ = upstream
    client = await forwarding_client(aiohttp_client, path)
    response = await client.get("/big")
    assert response.status == 200
    assert await response.read() == BIG


async def test_no_daemon_is_a_503_with_a_reason(aiohttp_client, tmp_path):
    client = await forwarding_client(aiohttp_client, str(tmp_path / "gone.sock"))
    response = await client.get("/admin")
    assert response.status == 503
    assert "not answering" in (await response.json())["error"]


async def test_a_body_over_the_limit_is_a_json_413_and_not_forwarded(aiohttp_client, upstream):
    path, seen, _ = upstream
    client = await forwarding_client(aiohttp_client, path)  # the app's limit: 1 MiB
    response = await client.post("/api/subscriptions", data=BIG + b"!")
    assert response.status == 413
    assert "body size" in (await response.json())["error"]
    assert seen == []
