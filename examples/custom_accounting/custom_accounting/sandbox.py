"""A local, wire-compatible fake of the Ledger API, for tests, benchmarks and the demo.

Records are generated deterministically from their index, so a million of them cost no
memory until asked for; changes (updates, deletions) live in an overlay ordered after them.
Listings are ordered by (updated_at, id) and paged with an opaque ``after`` cursor;
``GET /v1/{stream}/{id}`` reads one record (404 once deleted). Every change is also queued
as a webhook event, which :meth:`SandboxState.webhook` signs and hands out like Ledger would.

Run alone: ``python -m custom_accounting.sandbox --port 8790 --transactions 100000``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

from .webhooks import SIGNATURE_HEADER, sign

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
STREAMS = ("accounts", "transactions")
OBJECTS = {"accounts": "account", "transactions": "transaction"}
"""The object name each stream's webhook events carry (``transaction.updated``)."""


@dataclass
class SandboxConfig:
    """Size and behaviour of the fake."""

    accounts: int = 50
    transactions: int = 1000
    token: str = "ledger-sandbox-token"
    max_page: int = 5000
    prerender: bool = False
    """Render every base page at start so serving costs nothing (benchmarks)."""
    page_size_hint: int = 1000
    delay: float = 0.0
    """Seconds each listing request waits before answering (a slow provider)."""


def _stamp(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_record(stream: str, index: int, accounts: int) -> dict[str, Any]:
    """The generated record number ``index`` of ``stream`` (before any change)."""
    if stream == "accounts":
        return {
            "id": f"acc_{index:06d}",
            "name": f"Account {index}",
            "type": ("asset", "liability", "income", "expense", "equity")[index % 5],
            "currency": "USD",
            "balance": f"{(index * 7919) % 1000000 / 100:.2f}",
            "updated_at": _stamp(index),
        }
    cents = (index * 104729) % 2500000 - 500000
    return {
        "id": f"txn_{index:08d}",
        "account_id": f"acc_{index % max(accounts, 1):06d}",
        "date": (EPOCH + timedelta(days=index % 700)).date().isoformat(),
        "amount": f"{cents / 100:.2f}",
        "currency": "USD",
        "description": f"Transaction {index} for client work and expenses",
        "memo": f"Ref {index * 31 % 99991:05d}",
        "updated_at": _stamp(index),
    }


@dataclass
class StreamState:
    """One stream: ``size`` generated records plus an ordered overlay of changed ones."""

    name: str
    size: int
    accounts: int
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[tuple[str, str]] = field(default_factory=list)
    """(updated_at, id) of every changed record, sorted; they come after all base records."""

    def get(self, record_id: str) -> dict[str, Any] | None:
        """A record by id (changed version if any), or None for an id it never had."""
        if record_id in self.changed:
            return self.changed[record_id]
        number = record_id.partition("_")[2]
        if not number.isdigit() or int(number) >= self.size:
            return None
        record = base_record(self.name, int(number), self.accounts)
        return record if record["id"] == record_id else None

    def touch(self, record: dict[str, Any], clock: int) -> None:
        """Store a changed record with a new updated_at at ``clock`` seconds."""
        old = self.changed.get(record["id"])
        if old is not None:
            self.order.remove((old["updated_at"], old["id"]))
        record["updated_at"] = _stamp(clock)
        self.changed[record["id"]] = record
        bisect.insort(self.order, (record["updated_at"], record["id"]))

    def page(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None, bool]:
        """Records after the cursor, in (updated_at, id) order: (records, next cursor, more).

        Cursors are ``b:<index>`` inside the generated records and ``c:<updated_at>|<id>``
        among changed ones, so a record changed again never shifts anyone's position.
        """
        out: list[dict[str, Any]] = []
        kind, _, value = (after or "b:-1").partition(":")
        cursor = after
        start = 0
        if kind == "b":
            index = int(value) + 1
            while index < self.size and len(out) < limit:
                record = base_record(self.name, index, self.accounts)
                if record["id"] not in self.changed:
                    out.append(record)
                index += 1
            cursor = f"b:{index - 1}" if index > int(value) + 1 else after
            if len(out) == limit:
                return out, cursor, index < self.size or bool(self.order)
        else:
            stamp, _, record_id = value.partition("|")
            start = bisect.bisect_right(self.order, (stamp, record_id))
        for position in range(start, len(self.order)):
            if len(out) == limit:
                return out, _overlay_cursor(out[-1]), True
            out.append(self.changed[self.order[position][1]])
        if out and out[-1]["id"] in self.changed:
            cursor = _overlay_cursor(out[-1])
        return out, cursor, False


def _overlay_cursor(record: dict[str, Any]) -> str:
    return f"c:{record['updated_at']}|{record['id']}"


class SandboxState:
    """The fake's data and counters; tests mutate it to simulate changes at the provider."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.streams = {
            "accounts": StreamState("accounts", config.accounts, config.accounts),
            "transactions": StreamState("transactions", config.transactions, config.accounts),
        }
        self.clock = max(config.accounts, config.transactions) + 10
        self.requests = 0
        self.fail_next: list[int] = []
        """HTTP statuses to answer the next requests with (a fault-injection queue)."""
        self.prerendered: dict[tuple[str, str | None, int], bytes] = {}
        self.events: list[dict[str, Any]] = []
        """Webhook events of the changes since the last :meth:`webhook`, oldest first."""
        self.event_count = 0

    def update(self, stream: str, record_id: str, **fields: Any) -> dict[str, Any]:
        """Change a record at the provider (it moves to the end of the change order)."""
        state = self.streams[stream]
        record = dict(state.get(record_id) or {"id": record_id})
        record.update(fields)
        self.clock += 1
        state.touch(record, self.clock)
        self._announce(stream, record_id, "deleted" if record.get("deleted") else "updated")
        return record

    def create(self, stream: str, record: dict[str, Any]) -> dict[str, Any]:
        """Add a record at the provider."""
        self.clock += 1
        state = self.streams[stream]
        state.touch(dict(record), self.clock)
        self._announce(stream, record["id"], "created")
        return state.changed[record["id"]]

    def _announce(self, stream: str, record_id: str, operation: str) -> None:
        self.event_count += 1
        self.events.append(
            {
                "id": f"evt_{self.event_count:06d}",
                "type": f"{OBJECTS[stream]}.{operation}",
                "data": {"id": record_id},
            }
        )

    def webhook(self, secret: str) -> tuple[bytes, dict[str, str]]:
        """The body and headers of a delivery of every queued event, signed with ``secret``
        (the queue is emptied; post the same body again to simulate a redelivery)."""
        body = orjson.dumps({"events": self.events})
        self.events = []
        return body, {SIGNATURE_HEADER: sign(body, secret), "Content-Type": "application/json"}

    def delete(self, stream: str, record_id: str) -> None:
        """Delete a record at the provider (listed with ``deleted: true``)."""
        self.update(stream, record_id, deleted=True)

    def live_records(self, stream: str) -> dict[str, dict[str, Any]]:
        """Every live record of a stream, by id (tests compare the hub's copy with this)."""
        out: dict[str, dict[str, Any]] = {}
        after: str | None = None
        while True:
            records, after, more = self.streams[stream].page(after, 5000)
            out.update({r["id"]: r for r in records if not r.get("deleted")})
            for r in records:
                if r.get("deleted"):
                    out.pop(r["id"], None)
            if not more:
                return out

    def render(self, stream: str, after: str | None, limit: int, include_deleted: bool) -> bytes:
        """One listing page as JSON bytes."""
        key = (stream, after, limit)
        if key in self.prerendered:
            return self.prerendered[key]
        records, cursor, more = self.streams[stream].page(after, limit)
        if not include_deleted:
            records = [r for r in records if not r.get("deleted")]
        return orjson.dumps({"data": records, "next_cursor": cursor, "has_more": more})

    def prerender(self, limit: int) -> None:
        """Render every page of every stream for page size ``limit`` ahead of time."""
        for stream in STREAMS:
            after: str | None = None
            while True:
                body = self.render(stream, after, limit, True)
                self.prerendered[(stream, after, limit)] = body
                page = orjson.loads(body)
                after = page["next_cursor"]
                if not page["has_more"]:
                    break


def create_app(config: SandboxConfig) -> web.Application:
    """The fake Ledger API as an aiohttp app; its state is ``app[STATE]``."""
    state = SandboxState(config)
    if config.prerender:
        state.prerender(config.page_size_hint)

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        state.requests += 1
        if state.fail_next:
            return web.json_response({"error": "injected"}, status=state.fail_next.pop(0))
        if request.headers.get("Authorization") != f"Bearer {config.token}":
            return web.json_response({"error": "invalid token"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def me(request: web.Request) -> web.Response:
        return web.json_response({"id": "ledger-demo", "name": "Demo Books LLC"})

    async def listing(request: web.Request) -> web.Response:
        stream = request.match_info["stream"]
        if stream not in STREAMS:
            return web.json_response({"error": "not found"}, status=404)
        try:
            limit = min(int(request.query.get("limit", "100")), config.max_page)
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        include_deleted = request.query.get("include_deleted") == "true"
        if config.delay:
            await asyncio.sleep(config.delay)
        body = state.render(stream, request.query.get("after"), limit, include_deleted)
        return web.Response(body=body, content_type="application/json")

    async def one(request: web.Request) -> web.Response:
        stream = state.streams.get(request.match_info["stream"])
        record = stream.get(request.match_info["id"]) if stream else None
        if record is None or record.get("deleted"):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(record)

    app = web.Application(middlewares=[auth])
    app[STATE] = state
    app.router.add_get("/v1/me", me)
    app.router.add_get("/v1/{stream}", listing)
    app.router.add_get("/v1/{stream}/{id}", one)
    return app


STATE = web.AppKey("state", SandboxState)


@dataclass
class RunningSandbox:
    """A sandbox serving on 127.0.0.1; ``close()`` stops it."""

    runner: web.AppRunner
    base_url: str
    config: SandboxConfig
    state: SandboxState

    async def close(self) -> None:
        """Stop serving."""
        await self.runner.cleanup()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_sandbox(config: SandboxConfig, port: int = 0) -> RunningSandbox:
    """Serve a sandbox on 127.0.0.1 (a free port unless ``port`` is given)."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningSandbox(runner, f"http://127.0.0.1:{port}", config, app[STATE])


def main() -> None:
    """Run the sandbox in the foreground."""
    parser = argparse.ArgumentParser(description="Local fake of the Ledger API")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--transactions", type=int, default=1000)
    parser.add_argument("--prerender", action="store_true")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per listing request")
    args = parser.parse_args()
    config = SandboxConfig(
        accounts=args.accounts,
        transactions=args.transactions,
        prerender=args.prerender,
        page_size_hint=args.page_size,
        delay=args.delay,
    )

    async def run() -> None:
        sandbox = await start_sandbox(config, args.port)
        print(f"ready {sandbox.base_url}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
