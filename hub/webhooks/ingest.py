"""Group commit for inbound webhooks: many requests' rows in one transaction.

Each request waits for the commit that contains its rows, so an answered request is on disk;
while one transaction commits, new arrivals queue up and go into the next one together.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from hub.store.database import Database
from hub.store.inbox import Stored, WebhookDelivery, insert_webhooks


class GroupCommitter:
    """Queues webhook deliveries and commits them in groups on the store's writer thread."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[WebhookDelivery, asyncio.Future[Stored]]] = []
        self._writing = False

    async def store(self, delivery: WebhookDelivery) -> Stored:
        """Store ``delivery`` durably; return once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._pending.append((delivery, future))
        if not self._writing:
            self._flush(loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        group, self._pending = self._pending, []
        try:
            done = self._db.submit(insert_webhooks, [delivery for delivery, _ in group])
        except Exception as exc:  # the store is closed: nobody waits forever
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        self._writing = True
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._committed, loop, group, f))

    def _committed(
        self,
        loop: asyncio.AbstractEventLoop,
        group: list[tuple[WebhookDelivery, asyncio.Future[Stored]]],
        done: Future[list[Stored]],
    ) -> None:
        self._writing = False
        error = done.exception()
        for index, (_, future) in enumerate(group):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[index])
        if self._pending:
            self._flush(loop)
