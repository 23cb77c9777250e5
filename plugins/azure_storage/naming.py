"""Blob names: ``{org}/{client}/{timestamp}_{sanitised file name}``.

The file name comes from the uploader and is never trusted: only its last path component is
kept, and only ASCII letters, digits, ``.``, ``_`` and ``-`` survive (anything else becomes
``_``), so no separator, ``..``, control or non-ASCII character can move a blob out of its
client's prefix. The client reference must already be a safe segment (checked, not fixed).
"""

from __future__ import annotations

import re
from datetime import datetime

from .settings import SEGMENT_PATTERN

MAX_NAME_CHARS = 120
UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
DOTS_RE = re.compile(r"\.{2,}")
SEGMENT_RE = re.compile(SEGMENT_PATTERN)


def safe_client(client: str) -> bool:
    """Whether ``client`` may be a blob name segment as it is (letters, digits, ``._-``)."""
    return bool(SEGMENT_RE.match(client))


def sanitise(name: str) -> str:
    """The file name as it may appear in a blob name: at most ``MAX_NAME_CHARS`` safe
    characters, the extension kept; ``file`` when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    base = DOTS_RE.sub(".", UNSAFE_RE.sub("_", base)).strip("._-") or "file"
    if len(base) > MAX_NAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        keep = ext[:16] if dot and stem else ""
        base = base[: MAX_NAME_CHARS - len(keep) - 1].rstrip("._-") + ("." + keep if keep else "")
    return base


def blob_name(org: str, client: str, at: datetime, name: str) -> str:
    """The blob name of a document uploaded ``at`` (UTC, to the microsecond)."""
    return f"{org}/{client}/{at.strftime('%Y%m%dT%H%M%S%fZ')}_{sanitise(name)}"


def client_prefix(org: str, client: str) -> str:
    """The prefix every blob of ``client`` starts with."""
    return f"{org}/{client}/"
