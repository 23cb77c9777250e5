"""The hub events documents produce (Azure itself sends the hub no webhooks).

``document.uploaded``: a document was stored and recorded; the data is ``id``, ``client``,
``name``, ``content_type``, ``size``, ``sha256`` and ``uploaded_by`` (the e-mail address the
upload request gave in ``X-Uploaded-By``, or None). Document analysis (the OpenAI plugin)
and outbound subscriptions receive it.
"""

from __future__ import annotations

from hub.api import HubAPI, Row

from .settings import NAME

UPLOADED = "document.uploaded"
UPLOADED_FIELDS = ("id", "client", "name", "content_type", "size", "sha256", "uploaded_by")


async def emit_uploaded(hub: HubAPI, row: Row) -> None:
    """Publish ``document.uploaded`` for a recorded document."""
    await hub.emit(UPLOADED, {field: row[field] for field in UPLOADED_FIELDS}, source=NAME)
