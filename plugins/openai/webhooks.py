"""The hub events of document analysis (OpenAI itself sends the hub no webhooks).

Consumed: ``document.uploaded`` (from the documents plugin; data ``id``, ``client``,
``name``, ``content_type``, ``size``, ``sha256``, ``uploaded_by``) queues an analysis when
``analyze_on_upload`` is on; a redelivery of the same upload does not analyse twice, and a
full queue raises so that the dispatcher delivers the event again later.

Emitted: ``document.analyzed`` with ``analysis_id``, ``document_id``, ``document_name``,
``client`` (and ``client_name``, the same reference), ``uploader_email``, ``type``,
``trigger``, ``model``, ``summary``, ``confidence``, ``recommendations`` and ``flags``; or
``document.analysis_failed`` with the same identification plus ``error`` (the reason) and
``error_class`` (``no_text``, ``unreadable``, ``too_large``, ``plan_limit``, ``quota``,
``rate_limit``, ``nonconforming``, ``authentication``, ``storage``, …).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import NAME

if TYPE_CHECKING:
    from hub.api import HubAPI
    from hub.model import HubEvent

    from .service import Runtime

UPLOADED = "document.uploaded"
ANALYZED = "document.analyzed"
FAILED = "document.analysis_failed"


async def emit_analyzed(hub: HubAPI, data: dict[str, Any]) -> None:
    """Publish ``document.analyzed``."""
    await hub.emit(ANALYZED, data, source=NAME)


async def emit_failed(hub: HubAPI, data: dict[str, Any]) -> None:
    """Publish ``document.analysis_failed``."""
    await hub.emit(FAILED, data, source=NAME)


async def on_event(event: HubEvent, runtime: Runtime) -> None:
    """Queue the analysis of an uploaded document (when ``analyze_on_upload``).

    :raise plugins.openai.sync.QueueFull: no place in the queue (the event is retried).
    """
    document_id = event.data.get("id")
    if event.type != UPLOADED or not runtime.settings.analyze_on_upload:
        return
    if isinstance(document_id, str):
        await runtime.start_upload_analysis(document_id)
