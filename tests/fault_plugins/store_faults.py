"""A test plugin for the readiness tests: ``POST /faults/max-page-count?value=N`` sets the
store writer's ``PRAGMA max_page_count`` (``value=0``: the database's current size), so that
the next write that needs a new page fails as it would on a full disk (SQLITE_FULL)."""

from __future__ import annotations

import sqlite_utils
from aiohttp import web

from hub.hookspecs import hookimpl
from hub.web.keys import HUB


@hookimpl
def routes() -> list[web.RouteDef]:
    """The fault switch (it reaches the store through the app: plugins get no store)."""

    async def max_page_count(request: web.Request) -> web.Response:
        wanted = int(request.query["value"])

        def apply(db: sqlite_utils.Database) -> int:
            pages = wanted or int(db.execute("PRAGMA page_count").fetchone()[0])
            return int(db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

        return web.json_response({"max_page_count": await request.app[HUB].store.db.write(apply)})

    return [web.post("/faults/max-page-count", max_page_count)]
