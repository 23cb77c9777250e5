"""The shared HTTP client: retries, Retry-After, classification, idempotency, limits."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web
from aioresponses import aioresponses

from hub.errors import (
    AuthenticationError,
    AuthorizationError,
    NetworkError,
    ProviderError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from hub.http import HttpClient, Response, RetryPolicy, classify, parse_retry_after

FAST = RetryPolicy(attempts=4, base_delay=0.005, max_delay=0.05)


@pytest.fixture
async def client():
    http = HttpClient(timeout=5)
    yield http
    await http.close()


@pytest.fixture
async def server(aiohttp_server):
    """A local provider whose routes misbehave on purpose; ``hits`` counts requests per path."""
    hits: Counter[str] = Counter()
    state = {"active": 0, "max_active": 0}

    def counted(handler):
        async def wrapper(request: web.Request) -> web.StreamResponse:
            hits[request.path] += 1
            return await handler(request, hits[request.path])

        return wrapper

    async def throttled(request, n):
        if n == 1:
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "0.2"}
            )
        return web.json_response({"ok": True})

    async def flaky(request, n):
        if n <= 2:
            return web.json_response({"error": "unavailable"}, status=503)
        return web.json_response({"ok": n})

    async def down(request, n):
        return web.Response(text="internal error", status=500)

    async def unauthorized(request, n):
        return web.json_response({"error": "invalid token"}, status=401)

    async def forbidden(request, n):
        return web.json_response({"error": "not allowed"}, status=403)

    async def bad(request, n):
        return web.json_response({"error": "bad field"}, status=400)

    async def slow(request, n):
        await asyncio.sleep(0.3)
        return web.json_response({"ok": True})

    async def fault_in_200(request, n):
        return web.json_response({"Fault": "busy"} if n == 1 else {"ok": True})

    async def busy(request, n):
        state["active"] += 1
        state["max_active"] = max(state["max_active"], state["active"])
        try:
            await asyncio.sleep(0.05)
        finally:
            state["active"] -= 1
        return web.json_response({"ok": True})

    async def echo(request, n):
        return web.json_response(
            {
                "method": request.method,
                "query": dict(request.query),
                "body": await request.json() if request.can_read_body else None,
                "ua": request.headers.get("User-Agent"),
                "ct": request.headers.get("Content-Type"),
            }
        )

    app = web.Application()
    for path, handler in {
        "/throttled": throttled,
        "/flaky": flaky,
        "/down": down,
        "/unauthorized": unauthorized,
        "/forbidden": forbidden,
        "/bad": bad,
        "/slow": slow,
        "/fault": fault_in_200,
        "/busy": busy,
        "/echo": echo,
    }.items():
        app.router.add_route("*", path, counted(handler))
    srv = await aiohttp_server(app)
    srv.hits = hits
    srv.state = state
    srv.base = str(srv.make_url("")).rstrip("/")
    return srv


async def test_429_waits_at_least_retry_after(client, server):
    started = time.monotonic()
    response = await client.request("GET", f"{server.base}/throttled", retry=FAST)
    elapsed = time.monotonic() - started
    assert response.status == 200 and response.json() == {"ok": True}
    assert server.hits["/throttled"] == 2
    assert elapsed >= 0.2


async def test_503_twice_then_success(client, server):
    response = await client.request("GET", f"{server.base}/flaky", retry=FAST)
    assert response.json() == {"ok": 3}
    assert server.hits["/flaky"] == 3


async def test_persistent_500_raises_server_error_after_all_attempts(client, server):
    policy = RetryPolicy(attempts=3, base_delay=0.001)
    with pytest.raises(ServerError) as exc:
        await client.request("GET", f"{server.base}/down?api_key=secret123", retry=policy)
    assert server.hits["/down"] == 3
    assert exc.value.status == 500
    assert exc.value.error_class == "server"
    assert "internal error" in str(exc.value)
    assert "secret123" not in str(exc.value)  # the query string is not in the message


async def test_401_is_an_authentication_error_without_retry(client, server):
    with pytest.raises(AuthenticationError) as exc:
        await client.request("GET", f"{server.base}/unauthorized", retry=FAST)
    assert server.hits["/unauthorized"] == 1
    assert exc.value.status == 401


async def test_403_is_an_authorization_error_without_retry(client, server):
    with pytest.raises(AuthorizationError):
        await client.request("GET", f"{server.base}/forbidden", retry=FAST)
    assert server.hits["/forbidden"] == 1


async def test_400_is_a_validation_error_without_retry(client, server):
    with pytest.raises(ValidationError) as exc:
        await client.request("POST", f"{server.base}/bad", json={"x": 1}, retry=FAST)
    assert server.hits["/bad"] == 1
    assert exc.value.status == 400 and "bad field" in str(exc.value)


async def test_timeout_is_a_network_error_after_retries(client, server):
    policy = RetryPolicy(attempts=2, base_delay=0.001)
    started = time.monotonic()
    with pytest.raises(NetworkError) as exc:
        await client.request("GET", f"{server.base}/slow", retry=policy, timeout=0.05)
    assert server.hits["/slow"] == 2
    assert exc.value.error_class == "network"
    assert time.monotonic() - started < 0.5  # the per-call timeout applied, not the session's


async def test_post_is_not_retried_on_a_network_error(client, server):
    with pytest.raises(NetworkError):
        await client.request("POST", f"{server.base}/slow", json={"a": 1}, retry=FAST, timeout=0.05)
    assert server.hits["/slow"] == 1


async def test_post_marked_idempotent_is_retried_on_a_network_error(client, server):
    policy = RetryPolicy(attempts=3, base_delay=0.001)
    with pytest.raises(NetworkError):
        await client.request(
            "POST",
            f"{server.base}/slow",
            json={"a": 1},
            retry=policy,
            timeout=0.05,
            idempotent=True,
        )
    assert server.hits["/slow"] == 3


async def test_post_is_retried_on_a_5xx_answer(client, server):
    # the provider answered, so the request was not half-applied by a dropped connection
    response = await client.request("POST", f"{server.base}/flaky", json={}, retry=FAST)
    assert response.status == 200 and server.hits["/flaky"] == 3


async def test_check_raising_server_error_on_a_200_is_retried(client, server):
    def check(response: Response) -> None:
        if "Fault" in response.json():
            raise ServerError("fault inside a 200", status=response.status)

    response = await client.request("GET", f"{server.base}/fault", retry=FAST, check=check)
    assert response.json() == {"ok": True}
    assert server.hits["/fault"] == 2


async def test_check_raising_validation_error_is_not_retried(client, server):
    def check(response: Response) -> None:
        raise ValidationError("rejected inside a 200")

    with pytest.raises(ValidationError):
        await client.request("GET", f"{server.base}/fault", retry=FAST, check=check)
    assert server.hits["/fault"] == 1


async def test_concurrency_cap_per_limit_key(client, server):
    client.configure_limit("realm-1", max_concurrent=2)
    results = await asyncio.gather(
        *[client.request("GET", f"{server.base}/busy", limit_key="realm-1") for _ in range(6)]
    )
    assert all(r.status == 200 for r in results)
    assert server.hits["/busy"] == 6
    assert server.state["max_active"] == 2


async def test_without_a_limit_key_requests_run_in_parallel(client, server):
    await asyncio.gather(*[client.request("GET", f"{server.base}/busy") for _ in range(6)])
    assert server.state["max_active"] > 2  # so the capped test above could have failed


async def test_rate_limit_spaces_requests(client, server):
    client.configure_limit("realm-2", max_rate=2, period=0.2)
    started = time.monotonic()
    for _ in range(4):
        await client.request("GET", f"{server.base}/echo", limit_key="realm-2")
    assert time.monotonic() - started >= 0.15


async def test_request_details(client, server):
    response = await client.request(
        "POST", f"{server.base}/echo", params={"q": "1"}, json={"amount": "12.50"}
    )
    body = response.json()
    assert body["method"] == "POST" and body["query"] == {"q": "1"}
    assert body["body"] == {"amount": "12.50"}
    assert body["ct"] == "application/json"
    assert body["ua"].startswith("advisoros-hub/")


def test_response_json_of_a_non_json_body_is_a_server_error():
    response = Response(200, {}, b"<html>maintenance</html>", "https://api.example.com/x")
    with pytest.raises(ServerError, match="expected JSON"):
        response.json()


# --------------------------------------------------------------------------- Retry-After


def test_parse_retry_after_seconds():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None


def test_parse_retry_after_http_date():
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= parse_retry_after(future) <= 31
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past) == 0.0


def test_retry_delay_honours_retry_after_and_caps_backoff():
    policy = RetryPolicy(base_delay=1.0, max_delay=2.0)
    assert all(policy.delay(10, None) <= 2.0 for _ in range(50))
    assert policy.delay(1, 1.5) >= 1.5
    assert policy.delay(1, 3600) == 8.0  # a hostile Retry-After is capped at 4 x max_delay


# --------------------------------------------------------------------------- aioresponses


URL = "https://api.provider.test/v1/things"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, AuthorizationError),
        (404, ValidationError),
        (409, ValidationError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
    ],
)
async def test_classification_with_aioresponses(client, status, error):
    with aioresponses() as mocked:
        mocked.get(URL, status=status, body="nope", repeat=True)
        with pytest.raises(error) as exc:
            await client.request("GET", URL, retry=RetryPolicy(attempts=2, base_delay=0.001))
    assert exc.value.status == status
    assert isinstance(exc.value, ProviderError)
    assert type(classify(status, "x")) is error


async def test_connection_errors_with_aioresponses(client):
    with aioresponses() as mocked:
        mocked.get(URL, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
        with pytest.raises(NetworkError, match="refused"):
            await client.request("GET", URL, retry=RetryPolicy(attempts=3, base_delay=0.001))
        assert len(mocked.requests[("GET", aiohttp.client.URL(URL))]) == 3


async def test_recovery_with_aioresponses(client):
    with aioresponses() as mocked:
        mocked.get(URL, status=502)
        mocked.get(URL, status=429, headers={"Retry-After": "0"})
        mocked.get(URL, status=200, payload={"data": [1, 2]})
        response = await client.request("GET", URL, retry=FAST)
    assert response.json() == {"data": [1, 2]}
