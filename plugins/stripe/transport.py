"""The SDK's aiohttp client, with successful answers parsed by orjson.

The SDK parses every answer with ``json.loads(body, object_pairs_hook=OrderedDict)``: an
ordered dict built from a list of pairs for every object. For a page of 100 objects that is
most of what the event loop spends on the page, and it holds the GIL the store's writer
thread needs meanwhile. So :func:`answer_of` asks the HTTP client (the SDK's own
``AIOHTTPClient``, its extension point for transports) to parse a 2xx answer with orjson and
hand the SDK an empty object in its place. Everything else stays the SDK's: headers,
retries, telemetry, and every error answer (parsed and mapped to ``stripe`` errors as
before). A 2xx body that is not JSON is left to the SDK, which reports it as Stripe's
``APIError``.

Imported with the SDK, when the integration is first used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

import orjson
import stripe

EMPTY = b"{}"
_answer: ContextVar[list[Any] | None] = ContextVar("stripe_answer", default=None)
"""Where the HTTP client puts the parsed answer of the request :func:`answer_of` makes."""


class OrjsonAIOHTTPClient(stripe.AIOHTTPClient):
    """``stripe.AIOHTTPClient`` that parses the 2xx answers of :func:`answer_of`'s requests."""

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """Send the request; a 2xx JSON answer is parsed into the caller's slot."""
        body, status, answer_headers = await super().request_async(
            method, url, headers, post_data=post_data
        )
        slot = _answer.get()
        if slot is None or not 200 <= status < 300:
            return body, status, answer_headers
        try:
            slot[:] = [orjson.loads(body)]
        except orjson.JSONDecodeError:
            return body, status, answer_headers
        return EMPTY, status, answer_headers


async def answer_of(send: Callable[[], Awaitable[stripe.StripeResponse]]) -> object:
    """``await send()`` (one raw SDK request) and the JSON its answer carries."""
    slot: list[Any] = []
    token = _answer.set(slot)
    try:
        response = await send()
    finally:
        _answer.reset(token)
    # taken out of the slot: timer handles made during the request keep a copy of the
    # context (the slot with it) until the loop drops them, long after the answer is used
    return slot.pop() if slot else response.data
