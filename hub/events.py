"""The event bus: one call publishes a hub event, stored durably, delivered by the dispatcher.

``hub.emit("sync.completed", {...})`` stores the event with one pending delivery per handler
(every ``event`` hook implementation and every matching outbound subscription); the
dispatcher delivers them at least once, retrying failures, exactly like webhook events.
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
        """Store the event and its deliveries, then wake the dispatcher."""
        hub = self._hub
        event = HubEvent(
            type=type, data=data, id=f"evt_{uuid.uuid4().hex}", source=source, created_at=utcnow()
        )
        handlers = hub.dispatcher.handlers_for("hub", type)
        await hub.store.inbox.add_event(
            NewEvent(
                source=source,
                event_id=event.id,
                type=type,
                data=dict(data),
                connection_key=None,
                handlers=handlers,
            )
        )
        if handlers:
            hub.dispatcher.wake()
        log.debug("event emitted", type=type, id=event.id, handlers=len(handlers))
        return event
