"""Outbound deliveries: signed per the Standard Webhooks scheme, sent only to safe addresses.

The payload is ``{"type", "timestamp", "data"}``; the headers ``webhook-id`` (the same on every
retry, so receivers can deduplicate), ``webhook-timestamp`` and ``webhook-signature``. Every
delivery re-checks where the URL resolves (DNS can change) and the session's resolver refuses
private addresses at connect time, unless ``webhooks.outbound.allow_private`` is set.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import structlog

from hub.errors import ProviderError
from hub.model import HubEvent
from hub.store.clock import utcnow
from hub.webhooks import signing, urlguard

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.outbound")


class DeliveryError(ProviderError):
    """The subscriber's endpoint did not accept a delivery."""

    error_class = "delivery"


class Outbound:
    """Signs and sends deliveries to subscriber endpoints."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._session: aiohttp.ClientSession | None = None

    @property
    def _settings(self) -> Any:
        return self._hub.settings.webhooks.outbound

    def session(self) -> aiohttp.ClientSession:
        """The guarded session (created on first use)."""
        if self._session is None or self._session.closed:
            self._session = urlguard.guarded_session(
                self._settings.allow_private, self._settings.timeout
            )
        return self._session

    async def deliver(self, sub_id: str, message_id: str, event: HubEvent) -> None:
        """Deliver ``event`` to subscription ``sub_id``; raise if it was not accepted."""
        subscription = await self._hub.store.subscriptions.get(sub_id)
        if subscription is None or subscription.state != "active":
            raise LookupError(f"subscription {sub_id} is gone or disabled")
        body = orjson.dumps(
            {"type": event.type, "timestamp": event.created_at or utcnow(), "data": event.data}
        )
        await self.post(subscription.url, subscription.secret, message_id, body)

    async def ping(self, url: str, secret: str) -> None:
        """Send the signed test ping that a new subscription must answer with 2xx."""
        body = orjson.dumps(
            {"type": "webhook.ping", "timestamp": utcnow(), "data": {"message": "hello"}}
        )
        await self.post(url, secret, f"msg_ping_{uuid.uuid4().hex[:12]}", body)

    async def post(self, url: str, secret: str, message_id: str, body: bytes) -> None:
        """POST ``body`` signed with ``secret``; DeliveryError unless the answer is 2xx."""
        allow_private = self._settings.allow_private
        await urlguard.check_destination(url, allow_private)
        headers = {
            "Content-Type": "application/json",
            **signing.headers(secret, message_id, int(time.time()), body),
        }
        started = time.perf_counter()
        target = _origin(url)  # paths and queries may carry secrets (Slack-style hook URLs)
        try:
            # Redirects are not followed: a 3xx turned POST into GET (a login page's 200 would
            # count as delivered) or re-sent the signed body to wherever Location points.
            post = self.session().post(url, data=body, headers=headers, allow_redirects=False)
            async with post as response:
                answer = await response.content.read(2000)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            latency = round((time.perf_counter() - started) * 1000, 1)
            reason = f"{type(exc).__name__}: {exc}".removesuffix(": ")  # a timeout has no text
            log.warning("outbound delivery failed", url=target, error=reason, latency_ms=latency)
            raise DeliveryError(reason) from None
        latency = round((time.perf_counter() - started) * 1000, 1)
        log.info("outbound delivery", url=target, status=status, latency_ms=latency, id=message_id)
        if not 200 <= status < 300:
            text = answer.decode("utf-8", "replace")[:300]
            raise DeliveryError(f"endpoint answered {status}: {text}", status=status)

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"
