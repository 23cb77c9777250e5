"""Stripe API calls through the ``stripe`` SDK's ``StripeClient``, on the hub's event loop.

The SDK is imported when the first client is built (never at load). Its HTTP client is
``stripe.AIOHTTPClient`` over the hub's one aiohttp session (parsing successful answers with
orjson: :mod:`.transport`), so every call is an ``_async`` call on the hub's loop, with
``timeout`` seconds per request. The SDK itself retries connection errors, 409 and 5xx
answers ``max_network_retries`` times (set explicitly: the ``StripeClient`` default is
none); a 429, which it does not retry, is retried here with exponential backoff and full
jitter, at most ``rate_limit_attempts`` tries, with the same idempotency key. Errors leave
as hub errors (:mod:`.errors`).

Every POST carries an idempotency key that the plugin stored in its ``requests`` table
before the call (:meth:`StripeApi.post`): a retry after a 429, a crash or a restart sends the
same key, and Stripe answers the first result instead of acting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import orjson
import structlog

from hub.errors import ServerError, ValidationError

from .errors import to_hub_error

if TYPE_CHECKING:
    import stripe

    from hub.api import HubAPI, TableSession
    from hub.model import Connection

    from .settings import StripeSettings

log = structlog.get_logger("plugins.stripe")

JSON = dict[str, Any]
T = TypeVar("T")
KEY_LIFETIME_S = 23 * 3600
"""Stripe keeps an idempotency key for 24 hours; a stored key older than this is replaced."""
MAX_DELAY_S = 30.0


def fingerprint(operation: str, params: Mapping[str, Any]) -> str:
    """A stable digest of one action and its parameters (the ``requests`` table's key)."""
    canonical = orjson.dumps({"op": operation, "params": params}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:40]


class StripeApi:
    """One connection's Stripe API: reads, pages in the SDK's auto-pagination order, and
    POSTs with persisted idempotency keys."""

    def __init__(self, hub: HubAPI, connection: Connection, settings: StripeSettings) -> None:
        import stripe  # the SDK is loaded when the integration is first used

        from .transport import OrjsonAIOHTTPClient, answer_of

        self._stripe = stripe
        self._answer_of = answer_of
        self._connection = connection
        self._tables = hub.tables(__name__)
        self._attempts = settings.rate_limit_attempts
        self._base_delay = settings.retry_base_delay
        self.page_size = settings.page_size
        self.sdk: stripe.StripeClient = stripe.StripeClient(
            str(connection.credentials.get("secret_key", "")),
            http_client=OrjsonAIOHTTPClient(
                timeout=aiohttp.ClientTimeout(total=settings.timeout), session=hub.http.session
            ),
            base_addresses={"api": settings.api_base_url},
            max_network_retries=settings.max_network_retries,
            stripe_version=settings.api_version,
        )

    # ------------------------------------------------------------------ calls

    async def call(self, where: str, send: Callable[[], Awaitable[T]]) -> T:
        """``await send()``, retrying Stripe's 429 with backoff; errors as hub errors."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send()
            except self._stripe.RateLimitError as exc:
                if attempt >= self._attempts:
                    raise to_hub_error(exc, where) from None
                wait = random.uniform(0, min(MAX_DELAY_S, self._base_delay * 2 ** (attempt - 1)))
                log.info("stripe throttled; retrying", where=where, attempt=attempt, wait_s=wait)
                await asyncio.sleep(wait)
            except self._stripe.StripeError as exc:
                raise to_hub_error(exc, where) from None

    async def request(self, method: str, path: str, **params: Any) -> JSON:
        """One API call; the answer's JSON object."""
        body = await self.call(
            f"{method.upper()} {path}",
            lambda: self._answer_of(lambda: self.sdk.raw_request_async(method, path, **params)),
        )
        if not isinstance(body, dict):
            raise ServerError(f"{method.upper()} {path}: Stripe answered no JSON object")
        return body

    async def get(self, path: str, **params: Any) -> JSON:
        """GET ``path`` (query parameters as keywords)."""
        return await self.request("get", path, **params)

    async def retrieve(self, path: str) -> JSON | None:
        """One object, or None if Stripe no longer has it (404)."""
        try:
            return await self.get(path)
        except ValidationError as exc:
            if exc.status == 404:
                return None
            raise

    async def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[list[JSON], None]:
        """Every object of a list endpoint, one page at a time, in the SDK's auto-pagination
        order: forward with ``starting_after``, or, given ``ending_before``, backwards
        through newer objects with each page reversed, so the whole runs oldest to newest.

        The next page is requested before the current one is handed over, so fetching it
        overlaps with storing this one.
        """
        query = {"limit": self.page_size, **(params or {})}
        backwards = "ending_before" in query and "starting_after" not in query
        ahead: asyncio.Future[JSON] = asyncio.ensure_future(self.get(path, **query))
        try:
            while True:
                page = await ahead
                data: list[JSON] = list(page.get("data") or [])
                if not data:
                    return
                if backwards:
                    query["ending_before"] = data[0]["id"]
                    data.reverse()
                else:
                    query["starting_after"] = data[-1]["id"]
                more = bool(page.get("has_more"))
                if more:
                    ahead = asyncio.ensure_future(self.get(path, **query))
                yield data
                if not more:
                    return
        finally:
            if not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead

    # ------------------------------------------------------------------ writes

    async def post(
        self,
        operation: str,
        path: str,
        params: Mapping[str, Any],
        *,
        request_key: str | None = None,
        repeatable: bool = False,
    ) -> JSON:
        """POST with an idempotency key stored before the call, and record the answer.

        :param request_key: identifies the action across retries (the caller's
            ``Idempotency-Key``); default: a digest of ``operation`` and ``params``.
        :param repeatable: the action may be repeated on purpose once it was answered (a
            plan change back and forth): an answered request gets a new key. Otherwise (a
            create) the same request within 24 hours reuses the key and Stripe replays the
            first answer.
        """
        digest = fingerprint(operation, {"key": request_key} if request_key else params)
        key = await self._key_for(operation, digest, repeatable)
        answer = await self.request("post", path, idempotency_key=key, **params)
        done = [time.time(), orjson.dumps(answer).decode(), self._connection.id, digest]
        await self._tables.transaction(
            lambda tx: tx.execute(
                "UPDATE {requests} SET state = 'done', answered_at = ?, answer = ? "
                "WHERE connection_id = ? AND fingerprint = ?",
                done,
            )
        )
        return answer

    async def _key_for(self, operation: str, digest: str, repeatable: bool) -> str:
        connection_id = self._connection.id

        def claim(tx: TableSession) -> str:
            row = tx.get("requests", (connection_id, digest))
            now = time.time()
            fresh = row is not None and now - float(row["created_at"]) < KEY_LIFETIME_S
            if row is not None and fresh and not (repeatable and row["state"] == "done"):
                return str(row["idempotency_key"])
            key = f"hub-{uuid.uuid4().hex}"
            tx.upsert(
                "requests",
                [
                    {
                        "connection_id": connection_id,
                        "fingerprint": digest,
                        "operation": operation,
                        "idempotency_key": key,
                        "state": "pending",
                        "created_at": now,
                        "answered_at": None,
                        "answer": None,
                    }
                ],
            )
            return key

        return await self._tables.transaction(claim)


def client_for(hub: HubAPI, connection: Connection, settings: StripeSettings) -> StripeApi:
    """A Stripe client for ``connection`` (the SDK is imported on first use)."""
    return StripeApi(hub, connection, settings)
