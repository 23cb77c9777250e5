"""Admission and group commit for inbound webhooks.

Admission bounds what the ingest holds: a request reserves its declared length (or the body
limit, when it declares none) before its body is read, and gives it back when its group has
committed or it was refused. Past ``webhooks.queue_max_requests`` or
``webhooks.queue_max_bytes`` a request is refused with 503 before anything is read or stored,
so memory stays bounded under any overload and every provider retries later.

Group commit: each request waits for the transaction that contains its rows, so an answered
request is on disk. Every group is written on the store's writer thread (urgent lane), and
its answers come back to the event loop in one hand-off. Requests that arrive while a group
is being written form the next group; under concurrent requests a group also waits
``GROUP_LINGER_S`` for more, sharing a commit's fixed cost (the B-trees' last pages and
page 1 are rewritten whatever its size). A lone request is committed at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from hub.store.database import Database
from hub.store.inbox import Stored, WebhookDelivery, insert_webhooks

GROUP_LINGER_S = 0.001
"""How long a group gathers more requests when the previous group had several."""


class Ticket:
    """One request's share of the ingest bounds, held until its rows are committed."""

    __slots__ = ("_admission", "_bytes", "_handed_over", "_held")

    def __init__(self, admission: Admission, size: int) -> None:
        self._admission = admission
        self._bytes = size
        self._held = True
        self._handed_over = False

    def resize(self, size: int) -> None:
        """The body turned out to be ``size`` bytes (at most what was reserved): give back the
        rest."""
        if self._held and size < self._bytes:
            self._admission.give_back(0, self._bytes - size)
            self._bytes = size

    def release(self) -> None:
        """The request is done with the ingest: give the reservation back, unless its rows
        were handed to the committer (which gives it back when they are committed)."""
        if not self._handed_over:
            self._give_back()

    def hand_over(self) -> None:
        """The request's rows are queued for a commit: only :meth:`committed` releases now."""
        self._handed_over = True

    def committed(self) -> None:
        """The transaction holding the request's rows has ended: give the reservation back."""
        self._give_back()

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._admission.give_back(1, self._bytes)


class Admission:
    """Counts the requests and bytes the ingest holds, refusing past either bound."""

    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def admit(self, size: int) -> Ticket | None:
        """Reserve room for one request of ``size`` bytes; None when the ingest is full.

        A request larger than the whole byte bound is still admitted when nothing else is
        held, so that every body within ``webhooks.max_body_bytes`` can get in.
        """
        if self.requests >= self.max_requests:
            return None
        if self.requests and self.bytes + size > self.max_bytes:
            return None
        self.requests += 1
        self.bytes += size
        return Ticket(self, size)

    def give_back(self, requests: int, size: int) -> None:
        """Release ``requests`` requests and ``size`` bytes (a :class:`Ticket` calls it)."""
        self.requests -= requests
        self.bytes -= size


Group = list[tuple[WebhookDelivery, Ticket, asyncio.Future[Stored]]]


class GroupCommitter:
    """Queues admitted webhook deliveries and commits them in groups on the writer thread."""

    def __init__(self, db: Database, admission: Admission) -> None:
        self._db = db
        self.admission = admission
        self._pending: Group = []
        self._busy = False
        """A flush is scheduled or a group is on the writer thread: newcomers just queue."""
        self._concurrent = False
        """The last group had more than one request: the next one lingers to gather more."""

    async def store(self, delivery: WebhookDelivery, ticket: Ticket) -> Stored:
        """Store ``delivery`` durably; return once the transaction holding it has committed.

        ``ticket`` is released when that transaction ends, even if the caller is cancelled
        meanwhile (its rows are still queued until then).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Stored] = loop.create_future()
        ticket.hand_over()
        self._pending.append((delivery, ticket, future))
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
        try:
            done = self._db.submit(
                insert_webhooks, [delivery for delivery, _, _ in group], urgent=True
            )
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
        """Answer the group's waiters and release their tickets, then start the next group if
        requests queued meanwhile."""
        for index, (_, ticket, future) in enumerate(group):
            ticket.committed()
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
