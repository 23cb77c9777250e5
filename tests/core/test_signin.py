"""Signing in: failed tokens throttled per client address, sessions ended on the server."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import structlog

from hub.testing import ADMIN_TOKEN
from hub.web.auth import SESSION_COOKIE
from hub.web.keys import AUTH
from hub.web.sessions import Sessions
from hub.web.throttle import FailureLimiter, address_key

WRONG = "wrong-token-guess-0123456789abcdefgh"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def sign_in(client: Any) -> str:
    """Sign in on the form; return the session cookie's value."""
    response = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert response.status == 303
    return str(response.cookies[SESSION_COOKIE].value)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- throttling


async def test_failed_bearer_tokens_are_throttled_per_client_address(hub_client):
    client = await hub_client(authorized=False)
    cookie = await sign_in(client)  # a browser signed in before the attack
    for _ in range(10):
        response = await client.get("/api/status", headers=bearer(WRONG))
        assert response.status == 401
    refused = await client.get("/api/status", headers=bearer(WRONG))
    assert refused.status == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 300
    assert "too many failed sign-in attempts" in (await refused.json())["error"]
    # the right token is not even checked from this address: a guess cannot be confirmed
    assert (await client.get("/api/status", headers=bearer(ADMIN_TOKEN))).status == 429
    assert (await client.get("/api/status", cookies={SESSION_COOKIE: cookie})).status == 200

    url = client.make_url("/api/status")  # another client address (the whole 127/8 is local)
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        async with other.get(url, headers=bearer(ADMIN_TOKEN)) as response:
            assert response.status == 200
        async with other.get(url, headers=bearer(WRONG)) as response:
            assert response.status == 401
    assert (await client.get("/api/status", headers=bearer(ADMIN_TOKEN))).status == 429


async def test_failed_logins_are_throttled_and_logged_without_the_token(hub_client):
    client = await hub_client(authorized=False, config={"admin": {"max_failures": 3}})
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            response = await client.post("/admin/login", data={"token": WRONG})
            assert response.status == 401
        refused = await client.post("/admin/login", data={"token": ADMIN_TOKEN})
    assert refused.status == 429 and refused.content_type == "text/html"
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many failed attempts" in await refused.text()
    assert "Set-Cookie" not in refused.headers
    failed = [line for line in logs if line["event"] == "admin sign-in failed"]
    assert [line["failures"] for line in failed] == [1, 2, 3]
    assert {(line["address"], line["via"]) for line in failed} == {("127.0.0.1", "login form")}
    assert [line["event"] for line in logs].count("admin sign-in throttled") == 1
    assert WRONG not in repr(logs) and ADMIN_TOKEN not in repr(logs)


async def test_a_plugin_route_refuses_a_throttled_token_too(hub_client):
    client = await hub_client(authorized=False, config={"admin": {"max_failures": 1}})
    assert (await client.get("/oauth/quickbooks/connect", headers=bearer(WRONG))).status == 401
    response = await client.get("/oauth/quickbooks/connect", headers=bearer(ADMIN_TOKEN))
    assert response.status == 429 and "Retry-After" in response.headers


def test_no_window_ever_holds_more_than_the_allowed_failures():
    clock = Clock()
    limiter = FailureLimiter(max_failures=3, window_s=300, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
        clock.now += 10
    assert limiter.retry_after("a") == 300 - 30  # until the first failure is 300 s old
    assert limiter.retry_after("b") is None  # other addresses are not affected
    clock.now = 1000.0 + 300
    assert limiter.retry_after("a") is None  # the first failure aged out: one more try
    limiter.failed("a")
    assert limiter.retry_after("a") == 10  # then the second's turn


def test_the_table_of_addresses_is_bounded():
    clock = Clock()
    limiter = FailureLimiter(max_failures=2, window_s=60, max_addresses=3, clock=clock)
    for key in ("a", "b", "c", "d"):
        limiter.failed(key)
        limiter.failed(key)
    assert len(limiter) == 3
    assert limiter.retry_after("a") is None  # the least recently failing one was dropped
    assert limiter.retry_after("d") is not None
    clock.now += 61
    limiter.failed("e")
    assert len(limiter) == 1  # the aged-out ones go first


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        (None, "unknown"),
    ],
)
def test_an_address_is_counted_as_its_ip_or_ipv6_slash_64(remote, key):
    assert address_key(remote) == key


# --------------------------------------------------------------------------- sessions


async def test_a_session_cookie_replayed_after_logout_is_refused(hub_client):
    client = await hub_client(authorized=False)
    cookie = await sign_in(client)
    captured = {SESSION_COOKIE: cookie}
    assert (await client.get("/api/status", cookies=captured)).status == 200
    response = await client.post("/admin/logout", allow_redirects=False)
    assert response.status == 303
    assert (await client.get("/api/status", cookies=captured)).status == 401
    page = await client.get("/admin", cookies=captured, allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/admin/login"
    assert len(client.app[AUTH].sessions) == 0


async def test_other_sessions_survive_one_logout(hub_client):
    client = await hub_client(authorized=False)
    first, second = await sign_in(client), await sign_in(client)
    await client.post("/admin/logout", cookies={SESSION_COOKIE: first}, allow_redirects=False)
    assert (await client.get("/api/status", cookies={SESSION_COOKIE: first})).status == 401
    assert (await client.get("/api/status", cookies={SESSION_COOKIE: second})).status == 200


async def test_the_session_cookie_lasts_session_ttl(hub_client):
    client = await hub_client(authorized=False, config={"admin": {"session_ttl": 600}})
    response = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert response.cookies[SESSION_COOKIE]["max-age"] == "600"


def test_sessions_expire_and_are_capped_oldest_first():
    clock = Clock()
    sessions = Sessions(max_sessions=2, ttl_s=100, clock=clock)
    first = sessions.new()
    clock.now += 10
    second, third = sessions.new(), sessions.new()
    assert len(sessions) == 2
    assert not sessions.valid(first)  # the oldest session ended for the newest
    assert sessions.valid(second) and sessions.valid(third)
    clock.now += 100
    assert not sessions.valid(second)
    sessions.new()
    assert len(sessions) == 1  # expired sessions are dropped
    assert not sessions.valid("made-up") and not sessions.end("made-up")


# --------------------------------------------------------------------------- Secure cookies


@pytest.mark.parametrize(
    ("public_url", "secure"), [("https://hub.example.com", True), (None, False)]
)
async def test_session_cookies_are_secure_behind_an_https_public_url(
    hub_client, public_url, secure
):
    client = await hub_client(authorized=False, config={"server": {"public_url": public_url}})
    response = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert ("Secure" in response.headers["Set-Cookie"]) is secure
