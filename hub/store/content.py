"""The content hash that event dedupe compares beside the event id.

An event id seen again with the same content is a redelivery (a duplicate); seen with other
content it is a new event: an id a signature does not cover (a generic sender's header) must
not let a replayed body suppress the real event that later comes under that id. The content
is the event's ``data`` as canonical JSON, so whitespace and key order never make two events.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

CONFLICT_SEPARATOR = "#"
CONFLICT_DIGITS = 32
"""A new event under a known id is stored as ``<id>#<first 32 hex digits of its hash>``."""


def content_hash(data: Any) -> str:
    """The SHA-256 (hex) of ``data`` serialised by orjson with its keys sorted."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def stored_content_hash(text: str) -> str:
    """:func:`content_hash` of an event stored as JSON text (the ``events.data`` column)."""
    return content_hash(orjson.loads(text))


def conflict_id(event_id: str, digest: str) -> str:
    """The id a new event gets when ``event_id`` is already stored with other content."""
    return f"{event_id}{CONFLICT_SEPARATOR}{digest[:CONFLICT_DIGITS]}"
