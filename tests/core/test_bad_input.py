"""Bad input is a 4xx with a reason, never a 5xx: JSON nested deeper than the store writes,
bodies that are not valid gzip or deflate or inflate past the limit, forms in unknown
charsets, on core and plugin routes alike; and a sweep of every core route (hypothesis)."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.hookspecs import hookimpl
from hub.model import Integration, WebhookEvent
from hub.testing import generic_signature, hub_of

LIMIT = 64 * 1024
SECRET = "bad-input-secret"
CONFIG = {"webhooks": {"max_body_bytes": LIMIT, "generic": {"zap": {"secret": SECRET}}}}


def nested(depth: int) -> bytes:
    """A JSON object whose innermost value is ``depth`` levels deep (the object counts)."""
    return b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


class LaxPlugin:
    """A source parsing its webhooks with the standard library (deeper JSON and integers
    past 64 bits than the store writes), and routes that read forms and JSON bodies."""

    __name__ = "lax"

    @hookimpl
    def register(self) -> Integration:
        return Integration(name="lax", title="Lax", default_sync_interval=None)

    @hookimpl
    def webhook(self, body: bytes) -> list[WebhookEvent]:
        return [WebhookEvent(id="1", type="received", data=json.loads(body))]

    @hookimpl
    def routes(self) -> list[web.RouteDef]:
        async def form(request: web.Request) -> web.Response:
            return web.json_response(dict(await request.post()))

        async def body(request: web.Request) -> web.Response:
            return web.json_response(await request.json())

        async def bug(request: web.Request) -> web.Response:
            return web.json_response({}[request.path])  # a KeyError of its own

        return [web.post("/lax/form", form), web.post("/lax/json", body), web.post("/lax/bug", bug)]


@pytest.fixture
async def client(hub_client: Any) -> Any:
    return await hub_client(plugins=[LaxPlugin()], config=CONFIG)


async def stored_requests(client: Any) -> int:
    rows = await hub_of(client).store.db.read(
        lambda db: db.execute("SELECT count(*) FROM webhook_requests").fetchone()
    )
    return int(rows[0])


async def answer(response: Any) -> tuple[int, str]:
    body = await response.json()
    return response.status, body.get("error", "")


async def post_generic(client: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
    signed = {"X-Signature": generic_signature(SECRET, body), **(headers or {})}
    return await client.post("/webhooks/generic/zap", data=body, headers=signed)


# ----------------------------------------------------------------- JSON the store cannot write


async def test_signed_json_nested_deeper_than_the_store_writes_is_400(client):
    assert (await post_generic(client, nested(254))).status == 200
    status, reason = await answer(await post_generic(client, nested(255)))
    assert status == 400
    assert reason == "event data cannot be stored as JSON: nested deeper than 254 levels"
    assert await stored_requests(client) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (nested(600), "nested deeper than 254 levels"),
        (b'{"n": 123456789012345678901234567890}', "Integer exceeds 64-bit range"),
        (b'{"s": "\\ud800"}', "str is not valid UTF-8: surrogates not allowed"),
    ],
)
async def test_a_plugins_events_the_store_cannot_write_are_400(client, body, reason):
    status, error = await answer(await client.post("/webhooks/lax", data=body))
    assert (status, error) == (400, f"event data cannot be stored as JSON: {reason}")
    assert await stored_requests(client) == 0


@pytest.mark.parametrize(
    "path", ["/api/sync/custom_accounting", "/api/subscriptions", "/api/clients/1/links"]
)
async def test_api_json_nested_deeper_than_the_store_writes_is_400(client, path):
    status, reason = await answer(await client.post(path, data=nested(300)))
    assert (status, reason) == (400, "body must be storable JSON: nested deeper than 254 levels")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"connection": {"id": 1}}', "connection must be a string: a connection id or key"),
        (b'{"full": [true]}', "full must be true or false"),
    ],
)
async def test_sync_options_of_the_wrong_type_are_400(client, body, reason):
    response = await client.post("/api/sync/custom_accounting", data=body)
    assert await answer(response) == (400, reason)


# ----------------------------------------------------------------- Content-Encoding

PAYLOAD = b'{"invoice": "INV-1"}'


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("x-gzip", gzip.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", zlib.compress(PAYLOAD)[2:-4]),  # raw deflate, without the zlib wrapper
        ("identity", PAYLOAD),
    ],
)
async def test_gzip_and_deflate_bodies_are_decoded(client, coding, body):
    response = await client.post(
        "/webhooks/generic/zap",
        data=body,
        headers={"X-Signature": generic_signature(SECRET, PAYLOAD), "Content-Encoding": coding},
    )
    assert response.status == 200, await response.text()
    data = await hub_of(client).store.db.read(
        lambda db: db.execute("SELECT data FROM events WHERE source = 'generic'").fetchone()
    )
    assert orjson.loads(data[0]) == {"invoice": "INV-1"}


@pytest.mark.parametrize(
    ("coding", "body", "status", "reason"),
    [
        ("gzip", b"not gzip at all", 400, "the body is not valid gzip data"),
        ("gzip", gzip.compress(PAYLOAD)[:-6], 400, "the body is not valid gzip data"),
        ("gzip", gzip.compress(PAYLOAD) + b"more", 400, "the body is not valid gzip data"),
        ("deflate", b"\x78\x9c garbage", 400, "the body is not valid deflate data"),
        (
            "br",
            PAYLOAD,
            415,
            "Content-Encoding 'br' is not supported (gzip, deflate, identity)",
        ),
        ("gzip", gzip.compress(b" " * (LIMIT + 1)), 413, f"body over {LIMIT} bytes once decoded"),
    ],
)
@pytest.mark.parametrize("path", ["/webhooks/generic/zap", "/api/sync/custom_accounting"])
async def test_bodies_that_do_not_decode_within_the_limit_are_4xx(
    client, path, coding, body, status, reason
):
    headers = {"X-Signature": generic_signature(SECRET, body), "Content-Encoding": coding}
    response = await client.post(path, data=body, headers=headers)
    assert await answer(response) == (status, reason)
    assert await stored_requests(client) == 0


@pytest.mark.parametrize("coding", ["gzip", "identity"])
async def test_a_body_of_exactly_the_limit_is_accepted(client, coding):
    payload = b'{"pad": "' + b" " * (LIMIT - 11) + b'"}'
    assert len(payload) == LIMIT
    response = await client.post(
        "/webhooks/generic/zap",
        data=gzip.compress(payload) if coding == "gzip" else payload,
        headers={"X-Signature": generic_signature(SECRET, payload), "Content-Encoding": coding},
    )
    assert response.status == 200
    response = await post_generic(client, payload + b" ")
    assert await answer(response) == (413, f"body over {LIMIT} bytes")


async def test_a_compressed_webhook_reserves_room_for_its_decoded_body(client):
    """Admission counts what a request holds: the body as sent and, when compressed, its
    decoded form (up to the limit), not only the declared compressed length."""
    admission = hub_of(client).ingest.admission
    body = gzip.compress(PAYLOAD)
    head = (
        "POST /webhooks/generic/zap HTTP/1.1\r\nHost: hub\r\nContent-Encoding: gzip\r\n"
        f"X-Signature: {generic_signature(SECRET, PAYLOAD)}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + body[:5])  # the request is admitted, its body still arriving
    await writer.drain()
    for _ in range(500):
        if admission.requests:
            break
        await asyncio.sleep(0.01)
    assert (admission.requests, admission.bytes) == (1, len(body) + LIMIT)
    writer.write(body[5:])
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    assert (admission.requests, admission.bytes) == (0, 0)


# ----------------------------------------------------------------- forms and bodies aiohttp decodes

FORMS = [
    ("application/x-www-form-urlencoded; charset=no-such-charset", b"token=abc"),
    ("application/x-www-form-urlencoded", b"token=\xff\xfe"),
    ("multipart/form-data", b"token=abc"),  # no boundary
    ("multipart/form-data; boundary=x", b"no parts at all"),
    (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="token"\r\n'
        b"Content-Type: text/plain; charset=no-such-charset\r\n\r\nabc\r\n--x--\r\n",
    ),
]


@pytest.mark.parametrize(("content_type", "body"), FORMS)
@pytest.mark.parametrize("path", ["/admin/login", "/lax/form"])
async def test_a_form_that_cannot_be_decoded_is_400(client, path, content_type, body):
    response = await client.post(path, data=body, headers={"Content-Type": content_type})
    status, reason = await answer(response)
    assert status == 400
    assert reason.startswith("the request body cannot be decoded: ")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json; charset=no-such-charset", b"{}"),
        ("application/json", b'{"broken"'),
        ("application/json", b'"\xff"'),
    ],
)
async def test_a_plugin_routes_json_that_cannot_be_decoded_is_400(client, content_type, body):
    response = await client.post("/lax/json", data=body, headers={"Content-Type": content_type})
    status, reason = await answer(response)
    assert status == 400
    assert reason.startswith("the request body cannot be decoded: ")


async def test_a_plugin_routes_own_lookup_error_is_still_a_500(client):
    response = await client.post("/lax/bug", data=b"{}")
    assert await answer(response) == (500, "internal error (see the hub's log)")


# ----------------------------------------------------------------- a sweep of the core routes

ROUTES = [
    ("GET", "/api/status"),
    ("GET", "/api/inbox"),
    ("POST", "/api/inbox/{id}/replay"),
    ("GET", "/api/runs/{id}"),
    ("GET", "/api/connections/{id}/diagnostics"),
    ("POST", "/api/sync/{name}"),
    ("GET", "/api/subscriptions"),
    ("DELETE", "/api/subscriptions/{id}"),
    ("POST", "/api/subscriptions/{id}/enable"),
    ("GET", "/api/clients"),
    ("GET", "/api/clients/reviews"),
    ("POST", "/api/clients/{id}/links"),
    ("GET", "/admin"),
    ("GET", "/admin/login"),
    ("POST", "/admin/login"),
    ("POST", "/admin/logout"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/oauth/quickbooks/disconnect"),
    ("POST", "/lax/form"),
    ("POST", "/lax/json"),
]
text = st.text(max_size=20)
json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
).map(lambda value: json.dumps(value).encode())  # integers past 64 bits included
fields = st.dictionaries(
    st.sampled_from(["connection", "full", "state", "limit", "url", "events", "token"]) | text,
    text | st.integers().map(str),
    max_size=4,
)
bodies = st.one_of(
    json_bodies,
    fields.map(orjson.dumps),
    st.binary(max_size=200),
    st.integers(1, 1100).map(nested),
    st.just(b""),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=latin-1",
        "application/json; charset=bogus",
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=bogus",
        "multipart/form-data",
        "multipart/form-data; boundary=b",
        "text/plain; charset=utf-16",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_no_request_to_a_core_route_is_answered_with_a_5xx(client, data):
    method, template = data.draw(st.sampled_from(ROUTES), label="route")
    value = data.draw(st.sampled_from(["1", "0", "generic", "lax", "x" * 30]) | text, label="part")
    path = template.format(id=value, name=value).replace("?", "%3F").replace("#", "%23")
    query = data.draw(fields, label="query")
    body = data.draw(bodies, label="body")
    headers = {}
    content_type = data.draw(content_types, label="content type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    coding = data.draw(st.sampled_from([None, "gzip", "deflate", "br"]), label="coding")
    if coding is not None:
        headers["Content-Encoding"] = coding
        if data.draw(st.booleans(), label="compressed"):
            body = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    response = await client.request(method, path, params=query, data=body, headers=headers)
    assert response.status < 500, await response.text()
