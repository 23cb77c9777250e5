"""Financial key figures across connections: each owning plugin's ``key_figures`` hook, asked
for ``hub.key_figures`` and ``GET /api/connections/{id}/financials``.

A plugin computes its figures from its own stored reports; the hub only gathers them. One
plugin that fails, answers late or answers something else is logged and left out, so a
caller (client insights, say) always gets what the healthy plugins know.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from hub.model import Connection, KeyFigures

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.key_figures")

KEY_FIGURES_TIMEOUT_S = 10.0
"""How long one plugin may take: it reads its own tables, never the provider."""


async def gather_key_figures(
    hub: Hub, connection_id: str | None = None, client_id: int | None = None
) -> list[KeyFigures]:
    """The key figures of one connection, or of every connection (those of ``client_id``
    only, when given), newest first.

    :raise LookupError: ``connection_id`` names no connection.
    """
    if connection_id is not None:
        connections = [await hub.connection(connection_id)]
    else:
        connections = await hub.connections()
    found = [
        figures
        for connection in connections
        if hub.plugins.has_owner_hook(connection.integration, "key_figures")
        and (figures := await _figures_of(hub, connection)) is not None
        and (client_id is None or figures.client_id == client_id)
    ]
    return sorted(found, key=lambda figures: figures.computed_at, reverse=True)


async def _figures_of(hub: Hub, connection: Connection) -> KeyFigures | None:
    try:
        async with asyncio.timeout(KEY_FIGURES_TIMEOUT_S):
            answer = await hub.plugins.call_owner(
                connection.integration, "key_figures", connection=connection
            )
    except Exception:
        log.exception("key_figures hook failed", connection=connection.id)
        return None
    if answer is not None and not isinstance(answer, KeyFigures):
        log.error(
            "key_figures hook answered something else",
            connection=connection.id,
            answer_type=type(answer).__name__,
        )
        return None
    return answer
