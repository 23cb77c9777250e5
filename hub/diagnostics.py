"""A connection's diagnostics dump: the plugin's ``diagnostics`` hook beside the hub's view of
the connection, redacted, for ``GET /api/connections/{id}/diagnostics`` and ``check
--verbose``.

Redaction masks values under the integration's ``secret_fields`` and under secret-looking key
names (:func:`hub.logs.redact`), and every occurrence of the connection's secret credential
and setting values inside any string, so a plugin that quotes a token still leaks nothing.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from hub.errors import error_class_of
from hub.logs import is_secret_key, redact
from hub.model import Connection
from hub.status import connection_status

if TYPE_CHECKING:
    from hub.core import Hub

DIAGNOSTICS_TIMEOUT_S = 30.0
MIN_SECRET_LENGTH = 4
"""Shorter values are not masked inside strings (they would mask ordinary text)."""


async def connection_diagnostics(hub: Hub, connection_id: str) -> dict[str, Any]:
    """The redacted dump of one connection.

    :raise LookupError: no such connection.
    """
    connection = await hub.connection(connection_id)
    streams = await hub.store.runs.stream_stats(connection.id)
    dump = {
        "connection": {
            "id": connection.id,
            "integration": connection.integration,
            "key": connection.key,
            "title": connection.title,
            "created_at": connection.created_at,
            "stored_fields": sorted(connection.credentials),
        },
        "state": connection_status(hub.connection_state(connection.id), streams),
        "plugin": await _plugin_dump(hub, connection),
    }
    fields = hub.plugins.integrations[connection.integration].secret_fields
    keys = frozenset(name.lower() for name in fields)
    redacted: dict[str, Any] = redact(dump, keys=keys, values=_secret_values(connection, keys))
    return redacted


async def _plugin_dump(hub: Hub, connection: Connection) -> Any:
    if not hub.plugins.has_owner_hook(connection.integration, "diagnostics"):
        return {"error": "the plugin has no diagnostics hook"}
    try:
        async with asyncio.timeout(DIAGNOSTICS_TIMEOUT_S):
            return await hub.plugins.call_owner(
                connection.integration, "diagnostics", connection=connection
            )
    except Exception as exc:
        return {"error": f"{error_class_of(exc)}: {exc}"}


def _secret_values(connection: Connection, keys: frozenset[str]) -> list[str]:
    """The connection's secret credential and setting values, longest first."""
    found = [
        str(value)
        for key, value in connection.credentials.items()
        if is_secret_key(key, keys) and value
    ]
    for key, value in connection.settings:
        items = value if isinstance(value, list | tuple) else [value]
        found += [item.get_secret_value() for item in items if isinstance(item, SecretStr)]
        if is_secret_key(key, keys) and isinstance(value, str):
            found.append(value)
    return sorted({v for v in found if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
