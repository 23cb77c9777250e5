"""Ledger's change notifications: HMAC-SHA256 (hex) of the body in ``X-Ledger-Signature``."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from hub.errors import MalformedWebhookError, SignatureError
from hub.model import WebhookEvent

SIGNATURE_HEADER = "X-Ledger-Signature"


def sign(body: bytes, secret: str) -> str:
    """The signature Ledger sends for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def parse(body: bytes, signature: str | None, secret: str | None) -> list[WebhookEvent]:
    """Verify ``signature`` in constant time, then parse ``{"events": [...]}``."""
    if not secret:
        raise SignatureError("no webhook_secret is configured for custom_accounting")
    presented = (signature or "").strip().lower().encode("utf-8", "surrogateescape")
    if not presented or not hmac.compare_digest(sign(body, secret).encode(), presented):
        raise SignatureError("bad or missing X-Ledger-Signature")
    try:
        payload: Any = orjson.loads(body)
        return [
            WebhookEvent(id=str(e["id"]), type=str(e["type"]), data=e, connection_key=None)
            for e in payload["events"]
        ]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise MalformedWebhookError(f"not a Ledger event list: {exc}") from None
