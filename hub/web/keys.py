"""Typed application state keys, declared in one place."""

from __future__ import annotations

from aiohttp import web

from hub.core import Hub
from hub.schedule import Scheduler
from hub.web.auth import AdminAuth

HUB = web.AppKey("hub", Hub)
SCHEDULER: web.AppKey[Scheduler | None] = web.AppKey("scheduler")
AUTH = web.AppKey("auth", AdminAuth)
