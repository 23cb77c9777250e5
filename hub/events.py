"""The event bus: one call publishes a hub event to every ``event`` hook implementation.

Delivery runs in the background so a slow handler never holds up the sync or request that
emitted the event; each handler is isolated from the others.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from hub.model import HubEvent
from hub.store.clock import utcnow

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.events")


class EventBus:
    """Publishes :class:`HubEvent` objects to the ``event`` hooks."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._tasks: set[asyncio.Task[Any]] = set()

    async def emit(self, type: str, data: dict[str, Any], source: str = "hub") -> HubEvent:
        """Create the event and deliver it to every ``event`` hook in the background."""
        event = HubEvent(
            type=type, data=data, id=f"evt_{uuid.uuid4().hex}", source=source, created_at=utcnow()
        )
        task = asyncio.create_task(self._hub.plugins.broadcast("event", event=event, hub=self._hub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.debug("event emitted", type=type, id=event.id)
        return event

    async def drain(self) -> None:
        """Wait until every event emitted so far was delivered."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Deliver what is pending (briefly), then give up on the rest."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
