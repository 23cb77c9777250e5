"""Group commit for inbound webhooks: many requests' rows in one transaction.

Each request waits for the commit that contains its rows, so an answered request is on disk.
Requests that arrive in the same turn of the event loop (under load, within a millisecond:
``GROUP_LINGER_S``) form one group, committed by the loop itself when it is free to write at
once (on this path a hop to the writer thread and back costs more than the SQL). When another
connection is writing (an ingest worker's group, a sync's batch), commits wait for the disk
(``synchronous = full``) or the group is large enough to stall the loop noticeably, the group
goes to the store's writer thread instead, which waits for its turn (see
:class:`hub.store.database.WriteTurn`), and newcomers gather for the next group.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from hub.store.database import Database, WriteBusy
from hub.store.inbox import Stored, WebhookDelivery, insert_webhooks

Group = list[tuple[WebhookDelivery, asyncio.Future[Stored]]]
LOOP_WRITE_MAX_BYTES = 1024 * 1024
"""A group whose bodies add up to more is written on the writer thread (about 2 ms of SQL)."""
GROUP_LINGER_S = 0.001
"""Under concurrent requests a group waits this long for more before it commits: each commit
rewrites the B-trees' last pages and page 1 whatever its size, so groups twice as large
halved that part of the WAL (and the checkpoints' work); measured with an ingest worker:
+5-10% requests/s and p99 ~8 ms instead of ~13. A lone request is committed at once."""


class GroupCommitter:
    """Queues webhook deliveries and commits them in groups."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: Group = []
        self._busy = False
        """A flush is scheduled or a group is on the writer thread: newcomers just queue."""
        self._concurrent = False
        """The last group had more than one request: the next one lingers to gather more."""

    async def store(self, delivery: WebhookDelivery) -> Stored:
        """Store ``delivery`` durably; return once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        self._pending.append((delivery, future))
        if not self._busy:
            self._busy = True
            if self._concurrent:
                loop.call_later(GROUP_LINGER_S, self._flush, loop)
            else:
                loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        group, self._pending = self._pending, []
        self._concurrent = len(group) > 1
        deliveries = [delivery for delivery, _ in group]
        small = sum(delivery.size for delivery in deliveries) <= LOOP_WRITE_MAX_BYTES
        if small and not self._db.waits_for_disk:
            try:
                results = self._db.write_now(insert_webhooks, deliveries)
            except WriteBusy:
                pass
            except Exception as exc:
                self._settle(loop, group, error=exc)
                return
            else:
                self._settle(loop, group, results)
                return
        try:
            done = self._db.submit(insert_webhooks, deliveries)
        except Exception as exc:  # the store is closed: nobody waits forever
            self._settle(loop, group, error=exc)
            return
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._committed, loop, group, f))

    def _committed(
        self, loop: asyncio.AbstractEventLoop, group: Group, done: Future[list[Stored]]
    ) -> None:
        error = done.exception()
        if error is None:
            self._settle(loop, group, done.result())
        else:
            self._settle(loop, group, error=error)

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        group: Group,
        results: list[Stored] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Answer the group's waiters, then start the next group if requests queued meanwhile."""
        for index, (_, future) in enumerate(group):
            if future.done():  # the request was cancelled (client gone): its rows still count
                continue
            if results is not None:
                future.set_result(results[index])
            else:
                future.set_exception(error or RuntimeError("webhook commit failed"))
        if self._pending:
            loop.call_soon(self._flush, loop)
        else:
            self._busy = False
