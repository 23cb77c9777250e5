"""The SDK's HTTP client with orjson: successful answers parsed once, errors left to the SDK."""

from __future__ import annotations

import contextvars
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

CUSTOMER = {"id": "cus_1", "object": "customer", "metadata": {"client_id": "7"}, "balance": -250}


@pytest.fixture
async def stripe_api(aiohttp_server) -> AsyncIterator[Any]:
    """A ``StripeClient`` over the orjson client, against a local Stripe of three answers."""
    import stripe

    from plugins.stripe.transport import OrjsonAIOHTTPClient

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "cus_1":
            return web.json_response(CUSTOMER)
        if name == "broken":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        body = {"error": {"type": "invalid_request_error", "message": "No such customer: 'x'"}}
        return web.json_response(body, status=404)

    app = web.Application()
    app.router.add_get("/v1/customers/{name}", handle)
    server = await aiohttp_server(app)
    http = OrjsonAIOHTTPClient()
    try:
        yield stripe.StripeClient(
            "sk_test_transport",
            http_client=http,
            base_addresses={"api": str(server.make_url("")).rstrip("/")},
            max_network_retries=0,
        )
    finally:
        await http.close_async()


async def test_a_successful_answer_is_parsed_once_into_plain_dicts(stripe_api):
    from plugins.stripe.transport import answer_of

    answer = await answer_of(lambda: stripe_api.raw_request_async("get", "/v1/customers/cus_1"))
    assert answer == CUSTOMER
    assert type(answer) is dict and type(answer["metadata"]) is dict  # not the SDK's parse


async def test_outside_answer_of_the_sdk_parses_as_it_always_did(stripe_api):
    response = await stripe_api.raw_request_async("get", "/v1/customers/cus_1")
    assert response.data == CUSTOMER
    assert isinstance(response.data, OrderedDict)


async def test_error_answers_are_still_the_sdks_errors(stripe_api):
    import stripe

    from plugins.stripe.transport import answer_of

    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        await answer_of(lambda: stripe_api.raw_request_async("get", "/v1/customers/gone"))
    with pytest.raises(stripe.APIError, match="Invalid response body"):
        await answer_of(lambda: stripe_api.raw_request_async("get", "/v1/customers/broken"))


async def test_a_context_captured_during_a_request_keeps_no_answer(stripe_api):
    """Timer handles made during a request keep a copy of its context until the loop drops
    them (long after): the answer must not stay reachable through it (a sync would keep
    hundreds of pages alive)."""
    from plugins.stripe.transport import answer_of

    captured: list[contextvars.Context] = []

    async def send() -> Any:
        response = await stripe_api.raw_request_async("get", "/v1/customers/cus_1")
        captured.append(contextvars.copy_context())
        return response

    answer = await answer_of(send)
    assert answer == CUSTOMER
    (context,) = captured
    assert not any(answer in value for value in context.values() if isinstance(value, list))
