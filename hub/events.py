"""The event bus: one call publishes a hub event, stored durably, delivered by the dispatcher.

``hub.emit("sync.completed", {...})`` stores the event; the dispatcher routes it to every
``event`` hook implementation and every matching outbound subscription and delivers it at
least once, retrying failures, exactly like webhook events.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import structlog

from hub.model import HubEvent
from hub.store.clock import utcnow
from hub.store.inbox import NewEvent

if TYPE_CHECKING:
    from hub.core import Hub

log = structlog.get_logger("hub.events")


class EventBus:
    """Publishes :class:`HubEvent` objects through the durable inbox."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def emit(self, type: str, data: dict[str, Any], source: str = "hub") -> HubEvent:
        """Store the event, then wake the dispatcher."""
        hub = self._hub
        event = HubEvent(
            type=type, data=data, id=f"evt_{uuid.uuid4().hex}", source=source, created_at=utcnow()
        )
        await hub.store.inbox.add_event(
            NewEvent(
                source=source, event_id=event.id, type=type, data=dict(data), connection_key=None
            )
        )
        hub.dispatcher.wake()
        log.debug("event emitted", type=type, id=event.id)
        return event
