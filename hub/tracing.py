"""Hook-call tracing (``HUB_TRACE_HOOKS=1``): every call logged with redacted arguments, a
summary of its result and its duration.

Arguments are summarised, never dumped: a connection by its id, a request by its method and
path, bytes by their length, settings and mappings redacted like every log line. Text is
redacted whole, then shortened, so a secret cut by the limit is never left half-masked. A
``diagnostics`` result is a plugin's dump of provider state: only its key names are logged.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel

from hub.logs import redact
from hub.model import Connection, HubEvent

log = structlog.get_logger("hub.plugins")
MAX_TEXT = 200


def summary(value: Any) -> Any:
    """A short, log-safe description of a hook argument or result."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Connection):
        return f"Connection({value.id})"
    if isinstance(value, HubEvent):
        return f"HubEvent({value.type}, id={value.id})"
    if isinstance(value, web.BaseRequest):
        return f"Request({value.method} {value.path})"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    if isinstance(value, BaseModel):
        return redact(value.model_dump(mode="json"))
    if isinstance(value, str):
        return _short(value)
    if isinstance(value, Mapping):
        return redact({str(k): summary(v) for k, v in list(value.items())[:20]})
    if isinstance(value, list | tuple):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _short(text: str) -> str:
    return str(redact(text))[:MAX_TEXT]


def _result(hook: str, value: Any) -> Any:
    if hook == "diagnostics" and isinstance(value, Mapping):
        return {"keys": sorted(str(k) for k in value)}
    return summary(value)


def traced(hook: str, plugin: str, kwargs: Mapping[str, Any], call: Callable[[], Any]) -> Any:
    """Run ``call`` (one hook implementation) and log it; an awaitable result is logged
    when it completes."""
    args = {k: summary(v) for k, v in kwargs.items() if k != "hub"}
    started = time.perf_counter()
    try:
        result = call()
    except Exception as exc:
        _log(hook, plugin, args, started, error=_short(repr(exc)))
        raise
    if inspect.isawaitable(result):
        return _awaited(hook, plugin, args, started, result)
    _log(hook, plugin, args, started, result=_result(hook, result))
    return result


async def _awaited(
    hook: str, plugin: str, args: dict[str, Any], started: float, pending: Awaitable[Any]
) -> Any:
    try:
        result = await pending
    except Exception as exc:
        _log(hook, plugin, args, started, error=_short(repr(exc)))
        raise
    _log(hook, plugin, args, started, result=_result(hook, result))
    return result


def _log(hook: str, plugin: str, args: dict[str, Any], started: float, **outcome: Any) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    log.info("hook call", hook=hook, plugin=plugin, args=args, duration_ms=duration_ms, **outcome)
