"""The outbox: every message is recorded before it is sent, sent by SendGrid (or SMTP when it
is the only channel, or SendGrid's fallback), and kept until it is sent or given up.

A send skips suppressed addresses (logged) and records one ``sends`` row per request with its
payload; the row is updated with the outcome: ``sent`` (SendGrid's ``X-Message-Id``),
``failed`` (a refusal no retry can fix: SendGrid's reason, e.g. an unknown template id) or
``retrying`` (every channel failed transiently). A background pass every ``retry_interval``
seconds resends what is due, so an alert sent while SendGrid is down is delivered later, and
after ``max_attempts`` passes a message is marked ``failed`` and logged as an error: nothing is
dropped silently. A process that dies mid-send leaves its row ``queued`` with a due time, so
the next pass sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from hub.errors import ProviderError, ValidationError, error_class_of

from . import smtp
from .client import NAME_KEY, RateGate, SendGridClient
from .message import Message, Recipient, chunks, normalise

if TYPE_CHECKING:
    from hub.api import HubAPI, PluginTables, Row, TableSession

    from .settings import SendGridSettings

log = structlog.get_logger("plugins.sendgrid")
PENDING = ("queued", "retrying")
MAX_ERROR = 1000


def stamp() -> str:
    """Now, in ISO 8601 (UTC)."""
    return datetime.now(UTC).isoformat()


class Mailer:
    """The e-mail channels of one hub: its outbox, SendGrid client and SMTP settings."""

    def __init__(self, hub: HubAPI, settings: SendGridSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.tables: PluginTables = hub.tables(__name__)
        self.gate = RateGate()
        self.sendgrid = (
            SendGridClient(hub.http, settings, self.gate) if settings.api_key is not None else None
        )
        hub.http.configure_limit(NAME_KEY, max_concurrent=settings.max_concurrent)
        self.clock: Callable[[], float] = time.time
        """Seconds since the epoch (tests move it)."""
        self._in_flight: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.ticks: list[Callable[[], Any]] = []
        """Coroutine functions the background pass also runs (the alert flush)."""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the background pass (resend due messages, run the ``ticks``)."""
        self._task = asyncio.create_task(self._loop(), name="sendgrid-outbox")

    def spawn(self, rows: Sequence[Row]) -> None:
        """Send recorded rows in the background (a bulk notification answered at once)."""
        task = asyncio.create_task(self.deliver(rows), name="sendgrid-bulk")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Stop the background pass and bulk sends (their rows stay due for the next start)."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retry_interval)
            try:
                await self.tick()
            except Exception:
                log.exception("e-mail background pass failed")

    async def tick(self) -> int:
        """One background pass: resend what is due, run the ``ticks``, drop old history;
        how many were resent."""
        sent = await self.retry_due()
        for tick in self.ticks:
            await tick()
        await self.prune()
        return sent

    async def prune(self) -> None:
        """Delete finished sends and recipient events older than ``history_days``."""
        cutoff = self.clock() - self.settings.history_days * 86400
        before = datetime.fromtimestamp(cutoff, UTC).isoformat()

        def apply(tx: TableSession) -> None:
            tx.execute(
                "DELETE FROM {sends} WHERE status NOT IN ('queued', 'retrying') AND created_at < ?",
                [before],
            )
            tx.execute("DELETE FROM {recipient_status} WHERE at < ?", [int(cutoff)])

        await self.tables.transaction(apply)

    # ------------------------------------------------------------------ sending

    async def suppressed(self, emails: Iterable[str]) -> set[str]:
        """The (normalised) addresses of ``emails`` on the suppression list."""
        keys = sorted({normalise(e) for e in emails})
        found: set[str] = set()
        for start in range(0, len(keys), 900):
            part = keys[start : start + 900]
            rows = await self.tables.query(
                "suppressions", f"email IN ({', '.join('?' * len(part))})", part
            )
            found |= {str(row["email"]) for row in rows}
        return found

    async def send(self, message: Message, batch: str | None = None) -> list[Row]:
        """Send ``message`` (split into requests within SendGrid's limits, each address once,
        suppressed ones skipped); return the ``sends`` rows, one per request."""
        return await self.send_all(await self.split(message), batch)

    async def split(self, message: Message) -> list[Message]:
        """``message`` without its suppressed recipients (logged), in requests within
        SendGrid's limits, each address once (an empty list: nobody is left)."""
        suppressed = await self.suppressed(r.email for r in message.recipients)
        if suppressed:
            log.info(
                "suppressed recipients skipped",
                kind=message.kind,
                count=len(suppressed),
                emails=sorted(suppressed)[:10],
            )
        kept = [r for r in message.recipients if normalise(r.email) not in suppressed]
        parts = list(chunks(message.with_recipients(kept)))
        return parts or [message.with_recipients(())]

    async def send_all(self, messages: Sequence[Message], batch: str | None = None) -> list[Row]:
        """Record every message, then send them; return their ``sends`` rows after the
        attempt."""
        return await self.deliver(await self.record(messages, batch))

    async def record(self, messages: Sequence[Message], batch: str | None = None) -> list[Row]:
        """Store a ``sends`` row per message in one transaction (suppressed recipients left
        out); from then on the background pass sends them if nothing else does."""
        rows = [await self._admit(message, batch) for message in messages]
        await self.tables.upsert("sends", rows)
        return rows

    async def deliver(self, rows: Sequence[Row]) -> list[Row]:
        """Send recorded ``queued`` rows, ``max_concurrent`` at a time."""
        slots = asyncio.Semaphore(self.settings.max_concurrent)

        async def one(row: Row) -> Row:
            if row["status"] != "queued":
                return row
            async with slots:
                return await self._deliver(row)

        return list(await asyncio.gather(*(one(row) for row in rows)))

    async def _admit(self, message: Message, batch: str | None) -> Row:
        """The new ``sends`` row of ``message``, its suppressed recipients left out (a
        suppression may have arrived since :meth:`split`)."""
        suppressed = await self.suppressed(r.email for r in message.recipients)
        kept = [r for r in message.recipients if normalise(r.email) not in suppressed]
        message = message.with_recipients(kept)
        now = stamp()
        return {
            "id": uuid.uuid4().hex,
            "batch": batch,
            "kind": message.kind,
            "template": message.template_id,
            "subject": message.subject,
            "recipients": orjson.dumps([r.email for r in kept]).decode(),
            "recipient_count": len(kept),
            "payload": orjson.dumps(message.to_json()).decode() if kept else None,
            "status": "queued" if kept else "suppressed",
            "transport": None,
            "message_id": None,
            "attempts": 0,
            "last_error": None,
            # a process that dies while sending leaves the row due for the next pass
            "next_attempt_at": self.clock() + self.settings.retry_interval,
            "created_at": now,
            "updated_at": now,
        }

    async def _deliver(self, row: Row) -> Row:
        """Try every channel for one ``sends`` row and store the outcome."""
        send_id = str(row["id"])
        self._in_flight.add(send_id)
        try:
            message = Message.from_json(orjson.loads(row["payload"]))
            outcome = await self._attempt(message, send_id)
        finally:
            self._in_flight.discard(send_id)
        status, transport, message_id, error = outcome
        attempts = int(row["attempts"]) + 1
        if status == "retrying" and attempts >= self.settings.max_attempts:
            status = "failed"
            log.error("e-mail given up", send=send_id, kind=row["kind"], error=error)
        update = {
            "id": send_id,
            "status": status,
            "transport": transport,
            "message_id": message_id,
            "attempts": attempts,
            "last_error": error[:MAX_ERROR] if error else None,
            "next_attempt_at": (
                self.clock() + self.settings.retry_interval if status == "retrying" else None
            ),
            "updated_at": stamp(),
        }
        if status != "retrying":
            update["payload"] = None  # sent or given up: the body need not be kept
        await self.update("sends", "id", [update])
        return {**row, **update}

    async def _attempt(
        self, message: Message, send_id: str
    ) -> tuple[str, str | None, str | None, str | None]:
        """``(status, transport, message id, error)``: the first channel that takes it; a
        refusal (4xx other than 401/403/429) is final, anything else falls through to the
        next channel."""
        errors: list[str] = []
        for name, channel in self.channels():
            try:
                return "sent", name, await channel(message, send_id), None
            except ValidationError as exc:
                log.warning("e-mail refused", send=send_id, transport=name, error=str(exc))
                return "failed", name, None, f"{name}: {exc}"
            except ProviderError as exc:
                log.warning(
                    "e-mail channel failed",
                    send=send_id,
                    transport=name,
                    error_class=error_class_of(exc),
                    error=str(exc),
                )
                errors.append(f"{name}: {exc.error_class}: {exc}")
        return "retrying", None, None, "; ".join(errors)

    def channels(self) -> list[tuple[str, Callable[[Message, str], Any]]]:
        """The channels in the order they are tried: SendGrid, then SMTP."""
        channels: list[tuple[str, Callable[[Message, str], Any]]] = []
        if self.sendgrid is not None:
            channels.append(("sendgrid", self.sendgrid.send))
        if self.settings.smtp is not None:
            settings = self.settings
            channels.append(("smtp", lambda message, _id: smtp.send(message, settings)))
        return channels

    async def retry_due(self) -> int:
        """Resend every message whose next attempt is due; return how many were sent."""
        rows = await self.tables.query(
            "sends",
            "status IN ('queued', 'retrying') AND next_attempt_at <= ?",
            [self.clock()],
            order_by="next_attempt_at",
            limit=1000,
        )
        rows = [row for row in rows if row["id"] not in self._in_flight]
        done = [await self._deliver(row) for row in rows]
        return sum(1 for row in done if row["status"] == "sent")

    # ------------------------------------------------------------------ suppressions

    async def update(self, table: str, key: str, rows: Sequence[Row]) -> None:
        """Set the columns each row gives on the existing row whose ``key`` column matches
        (one transaction)."""
        await self.tables.transaction(lambda tx: update_rows(tx, table, key, rows))

    async def count(self, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
        """How many rows of one of the plugin's tables match ``where``."""
        # ``table`` is one of the plugin's own names, ``where`` a constant condition
        sql = f"SELECT count(*) AS n FROM {{{table}}}" + (f" WHERE {where}" if where else "")  # noqa: S608
        rows = await self.tables.transaction(lambda tx: tx.execute(sql, params))
        return int(rows[0]["n"])

    async def suppress(self, emails: Iterable[tuple[str, str, str]]) -> int:
        """Add ``(email, reason, source)`` entries to the suppression list."""
        now = stamp()
        rows = [
            {"email": normalise(email), "reason": reason[:500], "source": source, "created_at": now}
            for email, reason, source in emails
        ]
        return await self.tables.upsert("suppressions", rows) if rows else 0

    async def replace_source(self, source: str, entries: dict[str, str]) -> None:
        """Make the suppressions from ``source`` (a SendGrid list) exactly ``entries``
        (normalised address -> reason): add the new, drop the ones the list no longer has."""
        now = stamp()

        def apply(tx: TableSession) -> None:
            kept = {str(r["email"]) for r in tx.query("suppressions", "source = ?", [source])}
            tx.delete("suppressions", sorted(kept - set(entries)))
            known = {str(r["email"]) for r in tx.execute("SELECT email FROM {suppressions}")}
            tx.upsert(
                "suppressions",
                [
                    {"email": e, "reason": reason, "source": source, "created_at": now}
                    for e, reason in entries.items()
                    if e not in known
                ],
            )

        await self.tables.transaction(apply)


def update_rows(tx: TableSession, table: str, key: str, rows: Sequence[Row]) -> None:
    """``UPDATE`` each row of ``rows`` by its ``key`` column, inside ``tx``."""
    for row in rows:
        columns = [c for c in row if c != key]
        assignments = ", ".join(f'"{c}" = ?' for c in columns)
        # the table and column names are the plugin's own constants
        tx.execute(
            f'UPDATE {{{table}}} SET {assignments} WHERE "{key}" = ?',  # noqa: S608
            [*(row[c] for c in columns), row[key]],
        )


def recipients_of(addresses: Iterable[str]) -> tuple[Recipient, ...]:
    """Plain recipients for addresses (the admins, a billing contact)."""
    return tuple(Recipient(address) for address in addresses)
