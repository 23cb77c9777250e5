"""The hub's state as one JSON-ready dict: ``/api/status``, the admin page and ``check`` read it."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from hub import __version__
from hub.model import ConnectionStatus, HealthStatus

if TYPE_CHECKING:
    from hub.core import Hub
    from hub.schedule import Scheduler


REVIEWS_SHOWN = 50
"""Clients to review listed on the status page (all of them: ``/api/clients/reviews``)."""


async def hub_status(hub: Hub, scheduler: Scheduler | None = None) -> dict[str, Any]:
    """Integrations, connections with health and last sync per stream, runs, jobs, plugins."""
    jobs = scheduler.jobs() if scheduler is not None else []
    connections = await hub.connections()
    integrations = []
    for name, integration in sorted(hub.plugins.integrations.items()):
        items = []
        for connection in (c for c in connections if c.integration == name):
            streams = await hub.store.runs.stream_stats(connection.id)
            items.append(
                {
                    "id": connection.id,
                    "key": connection.key,
                    "title": connection.title,
                    **connection_status(hub.connection_state(connection.id), streams),
                    "streams": streams,
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


def connection_status(status: ConnectionStatus, streams: list[dict[str, Any]]) -> dict[str, Any]:
    """A connection's state as ``/api/status`` shows it, beside its stored ``streams``."""
    error = status.last_error
    # the stored streams also know successes of syncs run by another process (the CLI)
    successes = [status.last_success_at, *(s["last_success_at"] for s in streams)]
    return {
        "status": status.health.value if status.health else "unknown",
        "message": status.health_message,
        "checks": [asdict(check) for check in status.checks],
        "checked_at": status.checked_at,
        "last_success_at": max(filter(None, successes), default=None),
        "last_error": error.message if error else None,
        "last_error_class": error.error_class if error else None,
        "last_error_at": error.at if error else None,
        "last_error_advice": error.advice if error else None,
        "consecutive_failures": status.consecutive_failures,
        "backoff_s": status.backoff_s,
        "retry_at": status.retry_at,
        "needs_reauth": status.needs_reauth,
        "syncing": status.running is not None,
        "running": asdict(status.running) if status.running else None,
        "schedule": status.schedule,
        "next_sync_at": status.next_run_at,
    }


def _worst(connections: list[dict[str, Any]]) -> str:
    order = ["unknown", *[status.value for status in HealthStatus]]
    if not connections:
        return HealthStatus.DISCONNECTED.value
    return str(max((c["status"] for c in connections), key=order.index))
