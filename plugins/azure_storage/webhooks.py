"""The hub events documents produce (Azure itself sends the hub no webhooks), and those of
document analysis that change a document's record.

``document.uploaded``: a document was stored and recorded; the data is ``id``, ``client``,
``name``, ``content_type``, ``size``, ``sha256`` and ``uploaded_by`` (the e-mail address the
upload request gave in ``X-Uploaded-By``, or None). Document analysis (the OpenAI plugin)
and outbound subscriptions receive it.

``document.analyzed`` / ``document.analysis_failed`` (data ``document_id``) set the record's
``analysis_state`` to ``analyzed`` / ``failed``.
"""

from __future__ import annotations

from hub.api import HubAPI, Row
from hub.model import HubEvent

from . import tables
from .settings import NAME

UPLOADED = "document.uploaded"
UPLOADED_FIELDS = ("id", "client", "name", "content_type", "size", "sha256", "uploaded_by")


async def emit_uploaded(hub: HubAPI, row: Row) -> None:
    """Publish ``document.uploaded`` for a recorded document."""
    await hub.emit(UPLOADED, {field: row[field] for field in UPLOADED_FIELDS}, source=NAME)


ANALYSIS_STATES = {"document.analyzed": "analyzed", "document.analysis_failed": "failed"}
"""The analysis events and the ``analysis_state`` each leaves on the document's record."""


async def on_event(hub: HubAPI, event: HubEvent) -> None:
    """Record an analysis outcome on the analysed document (no-op for other events)."""
    state = ANALYSIS_STATES.get(event.type)
    document_id = event.data.get("document_id")
    if state is not None and isinstance(document_id, str):
        await tables.update(hub, document_id, {"analysis_state": state})
