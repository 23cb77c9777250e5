"""Standard Webhooks signatures (https://www.standardwebhooks.com/), symmetric scheme ``v1``.

A delivery carries three headers:

* ``webhook-id``: the message id, the same on every retry (the receiver's idempotency key);
* ``webhook-timestamp``: integer Unix seconds of this attempt;
* ``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256>`` entries, several during a
  secret rotation.

The signed content is ``f"{msg_id}.{timestamp}.".encode() + body``, keyed by the base64-decoded
secret (the part after ``whsec_``). Verification rejects, with :class:`SignatureError` and
nothing else, missing headers, a timestamp outside the tolerance and a signature header with no
matching ``v1`` entry. Comparison is constant-time and cannot raise on a length mismatch or on
garbage. A malformed *secret* is a configuration error and raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping

from hub.errors import SignatureError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "HEADER_ID",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "SECRET_PREFIX",
    "check_secret",
    "headers",
    "new_secret",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's public prefix, not a secret
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"
DEFAULT_TOLERANCE_S = 300

_SECRET_BYTES = 32  # the spec asks for at least 24 random bytes
_VERSION = "v1"
_TIMESTAMP_RE = re.compile(r"[0-9]{1,15}")  # plain ASCII digits, no sign, no spaces
_WANTED = (HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE)


def new_secret() -> str:
    """Return a fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    """Return the HMAC key of ``secret`` (``whsec_`` optional); ValueError when it is malformed."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    encoded += "=" * (-len(encoded) % 4)  # tolerate unpadded base64, as the reference libraries do
    try:
        key = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError("webhook secret is not base64 (expected whsec_<base64>)") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def check_secret(secret: str) -> None:
    """Raise :class:`ValueError` (without the secret in it) unless ``secret`` is usable."""
    _secret_key(secret)


def _digest(key: bytes, msg_id: bytes, timestamp: int, body: bytes) -> bytes:
    """Return the raw HMAC-SHA256 of ``{msg_id}.{timestamp}.{body}`` under ``key``."""
    mac = hmac.new(key, msg_id, hashlib.sha256)
    mac.update(b".%d." % timestamp)
    mac.update(body)
    return mac.digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return ``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}`` keyed by ``secret``.

    ``msg_id`` must be non-empty and free of ``.`` (the spec forbids it: it would make the
    signed content ambiguous); ``timestamp`` is non-negative Unix seconds. Violations and a
    malformed secret raise :class:`ValueError`.
    """
    if not msg_id or "." in msg_id:
        raise ValueError("webhook message id must be non-empty and contain no '.'")
    if timestamp < 0:
        raise ValueError("webhook timestamp must be non-negative Unix seconds")
    digest = _digest(_secret_key(secret), msg_id.encode("utf-8"), timestamp, body)
    return f"{_VERSION},{base64.b64encode(digest).decode('ascii')}"


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Return the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: sign(secret, msg_id, timestamp, body),
    }


def _pick_headers(received: Mapping[str, str]) -> dict[str, str]:
    """Return the three Standard Webhooks headers of ``received``, matched case-insensitively.

    The first occurrence wins (a multidict may repeat a header).
    """
    found: dict[str, str] = {}
    for name, value in received.items():
        lowered = name.lower() if isinstance(name, str) else ""
        if lowered in _WANTED and lowered not in found and isinstance(value, str):
            found[lowered] = value
    return found


def _header_bytes(value: str) -> bytes:
    """Return the wire bytes of a header value decoded by aiohttp (utf-8, surrogateescape)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise SignatureError("webhook-id header is not valid text") from exc


def _decode_signature(entry: str) -> bytes | None:
    """Return the digest bytes of one ``v1,<base64>`` entry, or None when it is not one."""
    version, comma, encoded = entry.partition(",")
    if not comma or version != _VERSION:
        return None
    try:
        return base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Check a delivery's Standard Webhooks headers against ``body``; return None when valid.

    Raises :class:`SignatureError` (and, for any header content, nothing else) when a header is
    missing or empty, the timestamp is not integer seconds or is more than ``tolerance_s`` away
    from ``now`` (default: the current time), or no ``v1`` entry of the space-separated
    signature list matches. A malformed ``secret`` raises :class:`ValueError`.
    """
    key = _secret_key(secret)
    found = _pick_headers(headers)
    missing = [name for name in _WANTED if not found.get(name)]
    if missing:
        raise SignatureError(f"missing webhook header(s): {', '.join(missing)}")

    raw_timestamp = found[HEADER_TIMESTAMP]
    if not _TIMESTAMP_RE.fullmatch(raw_timestamp):
        raise SignatureError("webhook-timestamp is not integer Unix seconds")
    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if timestamp < current - tolerance_s:
        raise SignatureError("webhook-timestamp is too old (outside the tolerance)")
    if timestamp > current + tolerance_s:
        raise SignatureError("webhook-timestamp is too new (outside the tolerance)")

    expected = _digest(key, _header_bytes(found[HEADER_ID]), timestamp, body)
    for entry in found[HEADER_SIGNATURE].split(" "):
        candidate = _decode_signature(entry)
        if candidate is not None and hmac.compare_digest(expected, candidate):
            return
    raise SignatureError("no matching webhook signature")
