"""The hub's state as one JSON-ready dict: ``/api/status``, the admin page and ``check`` read it."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from hub import __version__
from hub.model import HealthStatus

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.schedule import Scheduler


REVIEWS_SHOWN = 50
"""Clients to review listed on the status page (all of them: ``/api/clients/reviews``)."""


async def hub_status(hub: Hub, scheduler: Scheduler | None = None) -> dict[str, Any]:
    """Integrations, connections with health and last sync per stream, runs, jobs, plugins."""
    jobs = scheduler.jobs() if scheduler is not None else []
    next_runs = {job["id"]: job["next_run_at"] for job in jobs}
    connections = await hub.connections()
    integrations = []
    for name, integration in sorted(hub.plugins.integrations.items()):
        items = []
        for connection in (c for c in connections if c.integration == name):
            state = await hub.connection_state(connection.id)
            items.append(
                {
                    "id": connection.id,
                    "key": connection.key,
                    "title": connection.title,
                    "status": state.status.value if state.status else "unknown",
                    "message": state.message,
                    "checks": [asdict(check) for check in hub.health.state(connection.id).checks],
                    "last_success_at": state.last_success_at,
                    "last_error": state.last_error,
                    "last_error_class": state.last_error_class,
                    "syncing": state.syncing,
                    "next_sync_at": next_runs.get(f"sync:{connection.id}"),
                    "streams": await hub.store.runs.stream_stats(connection.id),
                }
            )
        configured = hub.settings_for(name) is not None or bool(items)
        integrations.append(
            {
                "name": name,
                "title": integration.title,
                "configured": configured,
                "status": _worst(items) if configured else HealthStatus.DISCONNECTED.value,
                "streams": [stream.name for stream in integration.streams],
                "connect_path": integration.connect_path,
                "connections": items,
            }
        )
    return {
        "hub": {
            "version": __version__,
            "uptime_s": round(time.time() - hub.started_at, 1),
        },
        "integrations": integrations,
        "runs": await hub.store.runs.recent(limit=15),
        "alerts": await hub.store.health.open_alerts(),
        "inbox": await hub.store.inbox.counts(),
        "client_reviews": {
            "count": await hub.store.clients.review_count(),
            "oldest": await hub.store.clients.reviews(limit=REVIEWS_SHOWN),
        },
        "jobs": jobs,
        "plugins": [asdict(info) for info in hub.plugins.info.values()],
    }


def _worst(connections: list[dict[str, Any]]) -> str:
    order = ["unknown", *[status.value for status in HealthStatus]]
    if not connections:
        return HealthStatus.DISCONNECTED.value
    return str(max((c["status"] for c in connections), key=order.index))
