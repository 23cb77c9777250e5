"""The content type of a document, from its first bytes rather than the uploader's word.

Recognised: PDF, PNG, JPEG, zip and the Office formats inside a zip (xlsx, docx), CSV and
plain text (UTF-8 without control characters; CSV when the declared type or the extension
says so, or every line has the same number of commas). Anything else is
``application/octet-stream``, whatever was declared.
"""

from __future__ import annotations

import codecs

SNIFF_BYTES = 64 * 1024
"""How much of the start of a document is looked at."""
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
TEXT_CONTROLS = frozenset(range(32)) - {9, 10, 12, 13}


def _zip_type(head: bytes) -> str:
    if b"xl/" in head:
        return XLSX
    if b"word/" in head:
        return DOCX
    return "application/zip"


def _text(head: bytes) -> str | None:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    if any(ord(c) in TEXT_CONTROLS for c in text):
        return None
    return text


def _looks_like_csv(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(text) == SNIFF_BYTES and len(lines) > 1:
        lines.pop()  # the last line may be cut
    counts = {line.count(",") for line in lines}
    return len(lines) >= 2 and len(counts) == 1 and counts != {0}


def content_type(head: bytes, declared: str | None, name: str) -> str:
    """The content type of a document starting with ``head`` (at least its first
    ``SNIFF_BYTES``, or all of it)."""
    head = head[:SNIFF_BYTES]
    for signature, kind in SIGNATURES:
        if head.startswith(signature):
            return kind
    if head.startswith(b"PK\x03\x04"):
        return _zip_type(head)
    text = _text(head)
    if text is None:
        return "application/octet-stream"
    said_csv = (declared or "").split(";")[0].strip().lower() == "text/csv"
    if said_csv or name.lower().endswith(".csv") or _looks_like_csv(text):
        return "text/csv"
    return "text/plain"
