"""The HTTP API and admin page: auth, readiness, sync triggers, runs, metrics, admin token."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub import hookimpl
from hub.model import Batch, Integration, Stream
from hub.store import Store
from hub.testing import ADMIN_TOKEN, build_hub, wait_for_run
from hub.web.app import create_app
from hub.web.auth import SESSION_COOKIE, TOKEN_META_KEY
from hub.web.keys import HUB
from tests.conftest import ledger_config

FIXTURES = Path(__file__).parent / "fixtures" / "plugins"


class Gated:
    """An integration whose sync holds until ``release`` is set."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="gated", title="Gated", streams=(Stream("items"),))

    @hookimpl
    def configure(self) -> list[Any]:
        from hub.model import ConnectionSpec

        return [ConnectionSpec(key="one", title="One", credentials={"token": "t"})]

    @hookimpl
    async def sync(self) -> AsyncIterator[Batch]:
        self.started.set()
        await self.release.wait()
        yield Batch("items", [{"id": "1"}], cursor={"done": True})


# --------------------------------------------------------------------------- public routes


async def test_healthz_needs_no_token(hub_client):
    client = await hub_client(authorized=False)
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_is_ready(hub_client):
    client = await hub_client(authorized=False)
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"


async def test_readyz_reports_a_failed_plugin(hub_client, tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "broken.py").write_text((FIXTURES / "broken.py").read_text())
    client = await hub_client(config={"plugins": {"dir": str(folder)}}, authorized=False)
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert "plugin broken: import failed: RuntimeError: boom at import" in body["reasons"]
    assert (await client.get("/healthz")).status == 200  # alive, just not ready


# --------------------------------------------------------------------------- API auth


async def test_api_without_a_token_is_401_json(hub_client):
    client = await hub_client(authorized=False)
    response = await client.get("/api/status")
    assert response.status == 401
    assert response.content_type == "application/json"
    assert "admin token required" in (await response.json())["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_api_with_a_wrong_token_is_401(hub_client):
    client = await hub_client(authorized=False)
    for header in ("Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", "Basic " + ADMIN_TOKEN, ""):
        response = await client.get("/api/status", headers={"Authorization": header})
        assert response.status == 401, header
    response = await client.post(
        "/api/sync/custom_accounting", headers={"Authorization": "Bearer no"}
    )
    assert response.status == 401


async def test_api_with_the_token(hub_client):
    client = await hub_client()
    response = await client.get("/api/status")
    assert response.status == 200
    status = await response.json()
    assert "custom_accounting" in {i["name"] for i in status["integrations"]}


# --------------------------------------------------------------------------- sync and runs


async def test_sync_of_an_unknown_integration_is_404_json(hub_client):
    client = await hub_client()
    response = await client.post("/api/sync/unknown")
    assert response.status == 404
    assert response.content_type == "application/json"
    assert "unknown" in (await response.json())["error"]


async def test_sync_with_a_non_json_body_is_400(hub_client):
    client = await hub_client()
    response = await client.post(
        "/api/sync/custom_accounting", data=b"full=yes", headers={"Content-Type": "text/plain"}
    )
    assert response.status == 400
    assert (await response.json())["error"] == "body must be JSON"
    response = await client.post("/api/sync/custom_accounting", json=["not", "an", "object"])
    assert response.status == 400


async def test_sync_without_connections_is_404(hub_client):
    client = await hub_client()
    response = await client.post("/api/sync/custom_accounting", json={})
    assert response.status == 404
    assert "no connections" in (await response.json())["error"]


@pytest.mark.parametrize("run_id", ["999", "abc", "-1", "%C2%B2", "99999999999999999999999"])
async def test_unknown_or_malformed_run_is_404(hub_client, run_id):
    client = await hub_client()
    response = await client.get(f"/api/runs/{run_id}")
    assert response.status == 404
    assert response.content_type == "application/json"


async def test_second_sync_of_a_busy_connection_is_409(hub_client):
    plugin = Gated()
    client = await hub_client(plugins=[plugin], config={"integrations": {"gated": {}}})
    first = await client.post("/api/sync/gated", json={"connection": "one"})
    assert first.status == 202
    run_id = (await first.json())["run_id"]
    await asyncio.wait_for(plugin.started.wait(), 5)
    try:
        second = await client.post("/api/sync/gated", json={"connection": "gated:one"})
        assert second.status == 409
        body = await second.json()
        assert body["run_id"] == run_id
        assert "already running" in body["error"]
    finally:
        plugin.release.set()
    assert (await wait_for_run(client, run_id))["state"] == "succeeded"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text as {(sample name, labels): value}."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_sync_through_the_api_and_metrics(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger))
    await client.get("/healthz")
    before = samples(await (await client.get("/metrics")).text())
    healthz = {"method": "GET", "route": "/healthz", "status": "200"}
    assert before[("hub_http_requests_total", frozenset(healthz.items()))] == 1
    assert not any(name == "hub_records_total" for name, _ in before)

    response = await client.post("/api/sync/custom_accounting", json={"full": True})
    assert response.status == 202
    run = await wait_for_run(client, (await response.json())["run_id"])
    assert run["state"] == "succeeded" and run["created"] == 2530

    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    after = samples(await response.text())
    records = {"integration": "custom_accounting", "action": "created"}
    assert (
        after[("hub_records_total", frozenset({**records, "stream": "transactions"}.items()))]
        == 2500
    )
    assert after[("hub_records_total", frozenset({**records, "stream": "accounts"}.items()))] == 30
    syncs = {"integration": "custom_accounting", "state": "succeeded"}
    assert after[("hub_syncs_total", frozenset(syncs.items()))] == 1
    posted = {"method": "POST", "route": "/api/sync/{name}", "status": "202"}
    assert after[("hub_http_requests_total", frozenset(posted.items()))] == 1


# --------------------------------------------------------------------------- admin page


async def test_admin_login_flow(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger), authorized=False)
    response = await client.get("/admin", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/admin/login"

    login = await client.get("/admin/login")
    assert login.status == 200 and "<form" in await login.text()

    response = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/admin"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie

    page = await client.get("/admin")
    assert page.status == 200
    assert page.content_type == "text/html"
    assert "Ledger (example)" in await page.text()
    # the session cookie also opens the API
    assert (await client.get("/api/status")).status == 200

    await client.post("/admin/logout", allow_redirects=False)
    assert (await client.get("/admin", allow_redirects=False)).status == 302


async def test_admin_login_with_a_wrong_token(hub_client):
    client = await hub_client(authorized=False)
    response = await client.post("/admin/login", data={"token": "guess"}, allow_redirects=False)
    assert response.status == 401
    assert response.content_type == "text/html"
    assert "That token is not right." in await response.text()
    assert "Set-Cookie" not in response.headers
    assert (await client.get("/admin", allow_redirects=False)).status == 302


async def test_a_forged_session_cookie_is_refused(hub_client):
    client = await hub_client(authorized=False)
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "9999999999.deadbeef"})
    assert (await client.get("/admin", allow_redirects=False)).status == 302
    assert (await client.get("/api/status")).status == 401


# --------------------------------------------------------------------------- generated token


async def test_admin_token_is_generated_once_and_stored_hashed(
    hub_config, aiohttp_client, tmp_path
):
    settings = hub_config({"admin": {"token": None}})
    announced: list[str] = []

    app = create_app(settings, hub=build_hub(settings), schedule=False, announce=announced.append)
    client = await aiohttp_client(app)
    (token,) = announced
    assert len(token) >= 32
    ok = await client.get("/api/status", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200
    assert (await client.get("/api/status")).status == 401
    await client.close()

    db = tmp_path / "hub.db"
    raw = db.read_bytes() + (Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b"")
    assert token.encode() not in raw
    store = Store(db)
    try:
        assert await store.get_meta(TOKEN_META_KEY) == hashlib.sha256(token.encode()).hexdigest()
    finally:
        store.close()

    again = create_app(settings, hub=build_hub(settings), schedule=False, announce=announced.append)
    client = await aiohttp_client(again)
    assert announced == [token]  # not announced a second time
    ok = await client.get("/api/status", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200


async def test_a_configured_token_is_never_announced(hub_config, aiohttp_client):
    settings = hub_config()
    announced: list[str] = []
    app = create_app(settings, hub=build_hub(settings), schedule=False, announce=announced.append)
    client = await aiohttp_client(app)
    assert announced == []
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await client.get("/api/status", headers=headers)).status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api//status",
        "/%61pi/status",
        "/api/./status",
        "/admin/../api/status",
        "/admin/login/../../api/status",
        "/admin/login/..%2F..%2Fapi/status",
        "//api/status",
    ],
)
async def test_path_tricks_do_not_bypass_auth(hub_client, path):
    client = await hub_client(authorized=False)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n".encode())
    status_line = (await reader.readline()).decode()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(status_line.split()[1])
    assert status in {302, 401, 404}, f"{path}: {status_line}"


async def session_cookie(client) -> str:
    response = await client.post("/admin/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    return response.cookies["hub_session"].value


@pytest.mark.parametrize("cookie", ["².x", "1.é", "9" * 40 + ".x", "\udcff.x", ""])
async def test_odd_session_cookies_are_401_not_500(hub_client, cookie):
    client = await hub_client(authorized=False)
    response = await client.get("/api/status", cookies={"hub_session": cookie})
    assert response.status == 401


@pytest.mark.parametrize("path", ["/api/inbox?limit=²", "/api/inbox/²/replay", "/api/runs/²"])
async def test_odd_numbers_in_urls_are_4xx_not_500(hub_client, path):
    client = await hub_client()
    method = client.post if path.endswith("replay") else client.get
    assert 400 <= (await method(path)).status < 500


async def test_cookie_writes_must_come_from_the_hubs_own_origin(hub_client, ledger):
    client = await hub_client(config=ledger_config(ledger), authorized=False)
    cookies = {"hub_session": await session_cookie(client)}
    cross = await client.post(
        "/api/sync/custom_accounting",
        cookies=cookies,
        headers={"Origin": "http://127.0.0.1:9999", "Sec-Fetch-Site": "same-site"},
    )
    assert cross.status == 401
    own = await client.post(
        "/api/sync/custom_accounting",
        cookies=cookies,
        headers={"Origin": str(client.make_url("")).rstrip("/"), "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status == 202
    assert (await client.get("/api/status", cookies=cookies)).status == 200  # reads: any origin


async def test_a_disabled_integration_is_loaded_but_kept_off(hub_client, ledger):
    config = ledger_config(ledger)
    client = await hub_client(config=config)
    hub = client.app[HUB]
    await hub.add_connection(
        "custom_accounting", "old", "Ledger old", {"api_token": "t"}, origin="test"
    )
    await client.close()

    config["integrations"]["custom_accounting"]["enabled"] = False
    client = await hub_client(config=config)
    hub = client.app[HUB]
    assert hub.disabled("custom_accounting")
    assert (await client.post("/api/sync/custom_accounting")).status == 409
    with pytest.raises(LookupError, match="disabled"):
        await hub.engine.run("custom_accounting:old")
    response = await client.post("/webhooks/custom_accounting", data=b"{}")
    assert response.status == 404
    assert "disabled" in (await response.json())["error"]
    await hub.health.check_all()
    assert hub.connection_state("custom_accounting:old").health is None  # never checked


async def test_sync_of_an_integration_without_a_sync_hook_is_404(hub_client):
    client = await hub_client(config={"webhooks": {"generic": {"zap": {"secret": "s"}}}})
    response = await client.post("/api/sync/generic")
    assert response.status == 404
    assert "nothing to sync" in (await response.json())["error"]


class StaticFiles:
    """A plugin trying to serve files under a protected prefix, where no handler could check
    the admin token."""

    def __init__(self, folder: Path, prefix: str) -> None:
        self.folder = folder
        self.prefix = prefix

    @hookimpl
    def routes(self) -> list[Any]:
        from aiohttp import web

        return [web.static(self.prefix, self.folder)]


@pytest.mark.parametrize(
    ("prefix", "path", "status"),
    [
        ("/admin/files", "/admin/files/secret.txt", 302),  # to the login page
        ("/api", "/api/secret.txt", 401),  # the bare prefix, without its trailing slash
    ],
)
async def test_plugin_static_files_under_protected_prefixes_are_refused(
    hub_client, tmp_path, prefix, path, status
):
    (tmp_path / "secret.txt").write_text("do not serve")
    client = await hub_client(plugins=[StaticFiles(tmp_path, prefix)], authorized=False)
    response = await client.get(path, allow_redirects=False)
    assert response.status == status
    assert "do not serve" not in await response.text()


async def test_requests_are_counted_per_route_pattern(hub_client):
    client = await hub_client()
    for _ in range(3):
        assert (await client.get("/api/runs/12345")).status == 404
    metrics = await (await client.get("/metrics")).text()
    line = 'hub_http_requests_total{method="GET",route="/api/runs/{id}",status="404"} 3.0'
    assert line in metrics


async def raw_request(client, method: str, path: str, token: str | None = None):
    """Send a request line as written (no client-side path normalisation)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: hub\r\n{auth}Content-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("POST", "/webhooks/generic/%0A", None, 404),
        ("POST", "/webhooks/generic/a%0Ab", None, 404),
        ("POST", "/webhooks/", None, 404),
        ("GET", "/webhooks/generic/zapier", None, 405),
        ("GET", "/nowhere", None, 404),
        ("GET", "/api/nope", None, 401),
        ("POST", "/api/status", None, 401),
        ("OPTIONS", "/api/status", None, 401),
        ("GET", "/api/nope", ADMIN_TOKEN, 404),
        ("POST", "/api/status", ADMIN_TOKEN, 405),
        ("GET", "/admin/nope", None, 302),
    ],
)
async def test_what_no_route_matches_is_answered_by_the_policy_in_json(
    hub_client, method, path, token, status
):
    client = await hub_client(authorized=False)
    got, headers, body = await raw_request(client, method, path, token)
    assert got == status, body
    if status == 302:
        assert headers["Location"] == "/admin/login"
        return
    assert headers["Content-Type"].startswith("application/json"), body
    assert "error" in orjson.loads(body)
    if status == 405:
        assert "GET" in headers["Allow"] or "POST" in headers["Allow"]


@pytest.mark.parametrize("path", ["/api/sync/custom_accounting", "/api/subscriptions"])
async def test_a_body_with_an_unknown_charset_is_400_not_500(hub_client, path):
    client = await hub_client()
    response = await client.post(
        path, data=b"\xff{", headers={"Content-Type": "application/json; charset=bogus"}
    )
    assert response.status == 400
    assert "JSON" in (await response.json())["error"]


async def test_the_last_success_is_remembered_across_a_restart(make_hub, ledger):
    from hub.status import hub_status

    first = await make_hub(config=ledger_config(ledger))
    (connection,) = await first.connections("custom_accounting")
    assert (await first.engine.run(connection.id, trigger="test")).state == "succeeded"
    await first.stop()
    again = await make_hub(config=ledger_config(ledger))  # the same database, a new process
    (integration,) = [
        i for i in (await hub_status(again))["integrations"] if i["name"] == "custom_accounting"
    ]
    assert integration["connections"][0]["last_success_at"] is not None
