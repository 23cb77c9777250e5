"""The plugin's running parts per hub (a :class:`~.service.Runtime`), created by ``startup``
when the integration is configured and stopped by ``shutdown``.

The analysis machinery (schemas, SDK client, queue) is imported by :func:`install`, so a hub
without the integration configured never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import results

if TYPE_CHECKING:
    from hub.api import HubAPI

    from .service import Runtime
    from .settings import OpenAISettings

_RUNNING: dict[int, Runtime] = {}


async def install(hub: HubAPI, settings: OpenAISettings) -> Runtime:
    """Create what runs for ``hub``; analyses a stop interrupted are marked failed."""
    from .service import Runtime

    await results.recover(hub)
    runtime = _RUNNING[id(hub)] = Runtime(hub, settings)
    return runtime


async def uninstall(hub: HubAPI) -> None:
    """Stop and forget what runs for ``hub`` (if anything)."""
    runtime = _RUNNING.pop(id(hub), None)
    if runtime is not None:
        await runtime.close()


def runtime_of(hub: HubAPI) -> Runtime | None:
    """What runs for ``hub``; None when the integration is not configured."""
    return _RUNNING.get(id(hub))
