"""OAuth: the connect flow and its refusals, disconnect, and token refresh under pressure."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from hub import hookimpl
from hub.errors import AuthenticationError
from hub.model import Alert, HealthStatus
from hub.testing import ADMIN_TOKEN
from hub.web.keys import AUTH, HUB
from plugins.quickbooks import oauth
from plugins.quickbooks.oauth import BINDING_COOKIE, client_for, refresh
from plugins.quickbooks.sandbox import start_sandbox
from tests.quickbooks.conftest import REALM, connect, qb_config, sandbox_config

CONNECTION = f"quickbooks:{REALM}"


def refreshes(state) -> list[Any]:
    return [r for r in state.token_requests if r.grant_type == "refresh_token"]


async def start_connect(client) -> str:
    """``/connect`` as the admin; return Intuit's answer: the callback URL with code and state."""
    response = await client.get("/oauth/quickbooks/connect", allow_redirects=False)
    assert response.status == 302, await response.text()
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(response.headers["Location"], allow_redirects=False) as intuit,
    ):
        assert intuit.status == 302
        return intuit.headers["Location"]


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_connect_flow_stores_the_company_encrypted(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    response = await client.get("/oauth/quickbooks/connect", allow_redirects=False)
    location = urlsplit(response.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == sandbox.authorize_url
    assert params["scope"] == "com.intuit.quickbooks.accounting"
    assert params["response_type"] == "code" and len(params["state"]) >= 40
    # neither redirect_uri nor server.public_url set: the listening address (server.port)
    assert params["redirect_uri"] == "http://127.0.0.1:8700/oauth/quickbooks/callback"
    cookie = response.cookies[BINDING_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"

    callback = await start_connect(client)
    response = await client.get(path_of(callback), allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"/admin?connected=quickbooks%3A{REALM}"
    hub = client.server.app[HUB]
    (connection,) = await hub.connections("quickbooks")
    assert (connection.key, connection.title) == (REALM, "Willow Books")
    grant = sandbox.state.token_requests[-1]
    assert grant.grant_type == "authorization_code" and grant.status == 200
    token = connection.credentials["refresh_token"]
    raw = await hub.store.db.read(
        lambda db: db.execute("SELECT credentials FROM connections").fetchone()[0]
    )
    assert token.encode() not in raw and b"access_token" not in raw
    status = await (await client.get("/api/status")).json()
    (qbo,) = [i for i in status["integrations"] if i["name"] == "quickbooks"]
    assert qbo["connections"][0]["status"] == "healthy"


async def test_connect_requires_the_admin_and_a_configured_app(hub_client, sandbox):
    anonymous = await hub_client(config=qb_config(sandbox), authorized=False)
    response = await anonymous.get("/oauth/quickbooks/connect", allow_redirects=False)
    assert response.status == 401
    response = await anonymous.post("/oauth/quickbooks/disconnect", data={"connection": REALM})
    assert response.status == 401
    unconfigured = await hub_client()
    response = await unconfigured.get("/oauth/quickbooks/connect", allow_redirects=False)
    assert response.status == 409 and "not configured" in (await response.json())["error"]


async def test_wrong_reused_and_expired_states_are_refused(hub_client, sandbox, monkeypatch):
    client = await hub_client(config=qb_config(sandbox))
    callback = await start_connect(client)
    wrong = callback.replace("state=", "state=x")
    response = await client.get(path_of(wrong), allow_redirects=False)
    assert response.status == 400 and "state" in (await response.json())["error"]
    assert (await client.get(path_of(callback), allow_redirects=False)).status == 303
    reused = await client.get(path_of(callback), allow_redirects=False)
    assert reused.status == 400 and "already used" in (await reused.json())["error"]

    monkeypatch.setattr(oauth, "STATE_TTL_S", -1.0)
    expired = await start_connect(client)
    response = await client.get(path_of(expired), allow_redirects=False)
    assert response.status == 400 and "expired" in (await response.json())["error"]
    assert len([r for r in sandbox.state.token_requests]) == 1  # only the valid one


async def test_a_state_from_another_session_is_refused(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    callback = await start_connect(client)
    url = client.make_url(path_of(callback))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (  # the admin's token, but not the browser that started the flow
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other,
        other.get(url, headers=headers, allow_redirects=False) as response,
    ):
        assert response.status == 400
        assert "browser session" in (await response.json())["error"]

    callback = await start_connect(client)
    binding = client.session.cookie_jar.filter_cookies(url)[BINDING_COOKIE].value
    auth = client.server.app[AUTH]
    cookies = {BINDING_COOKIE: binding, "hub_session": auth.new_session()}
    async with (  # the binding cookie leaked to another admin session
        aiohttp.ClientSession(cookies=cookies, cookie_jar=aiohttp.CookieJar(unsafe=True)) as other,
        other.get(client.make_url(path_of(callback)), allow_redirects=False) as response,
    ):
        assert response.status == 400
        assert "another admin session" in (await response.json())["error"]
    assert not await client.server.app[HUB].connections("quickbooks")


async def test_denied_consent_and_a_bad_code_are_refused(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    sandbox.state.authorize_error = "access_denied"
    response = await client.get(path_of(await start_connect(client)), allow_redirects=False)
    assert response.status == 400 and "access_denied" in (await response.json())["error"]
    sandbox.state.authorize_error = None
    callback = (await start_connect(client)).replace("code=", "code=forged")
    response = await client.get(path_of(callback), allow_redirects=False)
    assert response.status == 400 and "not accepted" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("config", "registered"),
    [
        ({"server": {"public_url": "https://hub.example.com"}}, "https://hub.example.com"),
        ({"server": {"host": "0.0.0.0", "port": 8123}}, "http://127.0.0.1:8123"),
    ],
)
async def test_the_redirect_uri_never_comes_from_the_host_header(hub_client, config, registered):
    """Intuit (the sandbox, with one registered redirect URI) is sent the configured callback,
    whatever Host the connect request claims, and the code exchange with it works."""
    uri = f"{registered}/oauth/quickbooks/callback"
    sandbox = await start_sandbox(sandbox_config(redirect_uris=(uri,)))
    try:
        client = await hub_client(config={**qb_config(sandbox), **config})
        response = await client.get(
            "/oauth/quickbooks/connect", headers={"Host": "evil.example"}, allow_redirects=False
        )
        assert response.status == 302, await response.text()
        sent = parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"]
        assert sent == [uri]
        binding = response.cookies[BINDING_COOKIE]
        assert binding["secure"] == (True if uri.startswith("https:") else "")
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(response.headers["Location"], allow_redirects=False) as intuit,
        ):
            assert intuit.status == 302, await intuit.text()  # registered: accepted
            callback = intuit.headers["Location"]
        assert callback.startswith(uri + "?")
        done = await client.get(
            path_of(callback), cookies={BINDING_COOKIE: binding.value}, allow_redirects=False
        )
        assert done.status == 303, await done.text()
        assert sandbox.state.token_requests[-1].status == 200  # same redirect_uri: exchanged
    finally:
        await sandbox.close()


async def test_the_plugins_own_redirect_uri_wins_over_the_public_url(hub_client, sandbox):
    own = "https://callbacks.example.com/oauth/quickbooks/callback"
    config = {**qb_config(sandbox, redirect_uri=own)}
    config["server"] = {"public_url": "https://hub.example.com"}
    client = await hub_client(config=config)
    response = await client.get("/oauth/quickbooks/connect", allow_redirects=False)
    assert parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"] == [own]


@pytest.mark.parametrize("realm", ["\u0661\u0662\u0663", "12a", "\u00b2", "", "1" * 33])
async def test_a_realm_id_that_is_not_ascii_digits_is_refused(hub_client, sandbox, realm):
    client = await hub_client(config=qb_config(sandbox))
    parts = urlsplit(await start_connect(client))
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query["realmId"] = realm
    response = await client.get(parts.path, params=query, allow_redirects=False)
    assert response.status == 400
    assert "realmId" in (await response.json())["error"]
    assert not await client.server.app[HUB].connections("quickbooks")
    assert not sandbox.state.token_requests  # the code was never exchanged


async def test_disconnect_revokes_and_removes_the_connection(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    await client.get(path_of(await start_connect(client)), allow_redirects=False)
    hub = client.server.app[HUB]
    (connection,) = await hub.connections("quickbooks")
    response = await client.post(
        "/oauth/quickbooks/disconnect",
        json={"connection": REALM},
        headers={"Accept": "application/json"},
    )
    assert await response.json() == {"disconnected": CONNECTION, "revoked": True}
    assert not await hub.connections("quickbooks")
    grant = sandbox.state.tokens.refresh[connection.credentials["refresh_token"]]
    assert grant.revoked
    response = await client.post("/oauth/quickbooks/disconnect", data={"connection": REALM})
    assert response.status == 404


# --------------------------------------------------------------------------- refresh


async def test_the_hard_expiry_intuit_answers_is_stored_and_kept(hub_client, sandbox):
    client = await hub_client(config=qb_config(sandbox))
    await client.get(path_of(await start_connect(client)), allow_redirects=False)
    hub = client.server.app[HUB]
    (connection,) = await hub.connections("quickbooks")
    credentials = connection.credentials
    five_years = sandbox.state.config.refresh_token_max_age
    stored = credentials["refresh_hard_expires_at"] - credentials["refreshed_at"]
    assert stored == pytest.approx(five_years, abs=0.01)  # asked for, so answered
    sandbox.state.advance_clock(1000)
    await refresh(hub, connection, rejected=credentials["access_token"])
    await hub.reload_credentials(connection)
    credentials = connection.credentials
    stored = credentials["refresh_hard_expires_at"] - credentials["refreshed_at"]
    assert stored == pytest.approx(five_years - 1000, abs=0.01)  # from the first grant
    kept = oauth.credentials_from({"access_token": "a", "refresh_token": "r"}, REALM, credentials)
    assert kept["refresh_hard_expires_at"] == credentials["refresh_hard_expires_at"]


async def test_200_concurrent_calls_with_an_expired_token_refresh_once(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox, requests_per_minute=5000))
    connection = await connect(hub, sandbox.state)
    sandbox.state.expire_access_tokens()  # the API refuses it; the hub believes it valid
    client = client_for(hub, connection)
    rows = await asyncio.gather(*(client.read("Customer", str(i % 23 + 1)) for i in range(200)))
    assert all(row is not None for row in rows)
    assert len(refreshes(sandbox.state)) == 1

    stored = await hub.connection(connection.id)  # expired by the hub's own clock this time
    await hub.save_credentials(stored, {**stored.credentials, "expires_at": time.time() - 5})
    copies = [await hub.connection(connection.id) for _ in range(200)]
    await asyncio.gather(*(hub.authenticate(copy) for copy in copies))
    assert len(refreshes(sandbox.state)) == 2
    assert len({copy.credentials["access_token"] for copy in copies}) == 1


async def test_the_rotated_refresh_token_is_saved_before_it_is_used(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox))
    connection = await connect(hub, sandbox.state)
    old = connection.credentials["refresh_token"]
    saved: list[str] = []
    original = hub.save_credentials

    async def save_credentials(conn, credentials):
        last = sandbox.state.requests[-1]  # nothing has used the new tokens yet
        assert last.path == "/oauth2/v1/tokens/bearer" and last.grant_type == "refresh_token"
        await original(conn, credentials)
        saved.append(credentials["refresh_token"])

    hub.save_credentials = save_credentials
    sandbox.state.expire_access_tokens()
    assert await client_for(hub, connection).read("Customer", "1")
    stored = await hub.connection(connection.id)
    assert saved == [stored.credentials["refresh_token"]] and saved[0] != old
    assert sandbox.state.tokens.refresh[saved[0]].refresh_token == saved[0]  # Intuit's current


async def test_a_refresh_cancelled_mid_exchange_still_saves_the_rotated_token(make_hub, sandbox):
    hub = await make_hub(config=qb_config(sandbox))
    connection = await connect(hub, sandbox.state)
    old = connection.credentials["refresh_token"]
    sandbox.state.delay_next(0.3, path="/oauth2/v1/tokens/bearer")
    caller = asyncio.create_task(refresh(hub, connection, connection.credentials["access_token"]))
    await asyncio.sleep(0.1)  # the token request is on its way
    caller.cancel()  # a health-check timeout, a shutdown
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    for _ in range(100):
        stored = (await hub.connection(connection.id)).credentials["refresh_token"]
        if stored != old:
            break
        await asyncio.sleep(0.02)
    assert stored != old
    assert sandbox.state.tokens.refresh[stored].refresh_token == stored  # Intuit's current one


class AlertSpy:
    """A plugin that records every alert."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    @hookimpl
    def alert(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def test_invalid_grant_disconnects_with_an_alert_and_no_retry_storm(make_hub, sandbox):
    spy = AlertSpy()
    hub = await make_hub(plugins=[spy], config=qb_config(sandbox))
    connection = await connect(hub, sandbox.state)
    await hub.health.check(connection.id)
    sandbox.state.tokens.revoke(connection.credentials["refresh_token"])  # revoked at Intuit
    sandbox.state.expire_access_tokens()
    result = await hub.engine.run(connection.id)
    assert (result.state, result.error_class) == ("failed", "authentication")
    report = await hub.health.check(connection.id)
    assert report.status is HealthStatus.DISCONNECTED and "reconnect" in report.message
    assert [a.status for a in spy.alerts] == [HealthStatus.DISCONNECTED]
    copies = [await hub.connection(connection.id) for _ in range(50)]
    outcomes = await asyncio.gather(*map(hub.authenticate, copies), return_exceptions=True)
    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    await hub.engine.run(connection.id)
    assert len(refreshes(sandbox.state)) == 1  # one refused refresh, never retried
    assert (await hub.store.health.open_alerts())[0]["status"] == "disconnected"


async def test_invalid_grant_after_another_process_refreshed_is_not_a_disconnect(
    make_hub, sandbox, monkeypatch
):
    hub = await make_hub(config=qb_config(sandbox))
    connection = await connect(hub, sandbox.state)
    original = oauth.token_request

    async def racing(hub_, settings, form):  # another process wins the refresh meanwhile
        theirs = await original(hub_, settings, form)
        other = await hub_.connection(connection.id)
        await hub_.store.connections.save_credentials(
            other.id, oauth.credentials_from(theirs, REALM, other.credentials)
        )
        return await original(hub_, settings, form)  # the same token again: invalid_grant

    monkeypatch.setattr(oauth, "token_request", racing)
    sandbox.state.expire_access_tokens()
    assert await client_for(hub, connection).read("Customer", "2")
    stored = await hub.connection(connection.id)
    assert "invalid_grant_at" not in stored.credentials
