"""An independent Standard Webhooks verifier, written from the spec text for the tests.

It deliberately imports nothing from ``hub``: the receiving side of the outbound tests uses it
to check the hub's deliveries, so a shared bug cannot hide on both sides.

Spec (standard-webhooks/standard-webhooks ``spec/standard-webhooks.md``, "Signature scheme",
"Webhook headers", "Verifying signatures"):

* signed content: ``{msg_id}.{timestamp}.{payload}``, HMAC-SHA256;
* secret: base64, prefixed ``whsec_``; the key is the decoded bytes;
* ``webhook-signature``: space-delimited list; a symmetric entry is ``v1,`` + base64 signature;
* compare in constant time; check ``webhook-timestamp`` is within a tolerance of now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


class ReferenceVerificationError(Exception):
    """The reference verifier rejected the message."""


def _key(secret: str) -> bytes:
    """Return the raw key of a ``whsec_`` secret (prefix optional)."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_") :]
    return base64.b64decode(secret)


def _header(headers: Mapping[str, str], name: str) -> str:
    """Return header ``name`` looked up case-insensitively; raise when absent or empty."""
    for key, value in headers.items():
        if key.lower() == name and value:
            return value
    raise ReferenceVerificationError(f"missing {name}")


def reference_signature(secret: str, msg_id: str, timestamp: str, payload: bytes) -> str:
    """Return the base64 HMAC-SHA256 of ``{msg_id}.{timestamp}.{payload}`` (no ``v1,``)."""
    content = b".".join([msg_id.encode(), timestamp.encode(), payload])
    mac = hmac.HMAC(_key(secret), content, digestmod=hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def reference_verify(
    secret: str,
    headers: Mapping[str, str],
    payload: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> str:
    """Verify a delivery per the spec; return its ``webhook-id``, raise when it is not valid."""
    msg_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise ReferenceVerificationError("bad timestamp")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise ReferenceVerificationError("timestamp outside tolerance")
    expected = base64.b64decode(reference_signature(secret, msg_id, timestamp, payload))
    for item in signatures.split(" "):
        version, _, value = item.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if hmac.compare_digest(given, expected):
            return msg_id
    raise ReferenceVerificationError("no matching signature")
