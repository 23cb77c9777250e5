"""Batches that wait for a busy writer are joined into one transaction: the same outcome as
one transaction each, fewer commits, and a group commits all of its batches or none."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from hub import hookimpl, sync_pass
from hub.model import Batch, Connection
from hub.testing import stored_records
from tests.core.test_store import ScriptedPlugin, item, scripted_hub, until


class SequencePlugin(ScriptedPlugin):
    """The scripted integration, yielding the given batches instead of pages, counting them
    as it goes, and waiting before the second until released (as ``wait_at=2`` does)."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        super().__init__(wait_at=2)
        self.batches = batches

    @hookimpl
    async def sync(
        self, connection: Connection, streams: Sequence[str], cursors: dict[str, Any], mode
    ) -> AsyncIterator[Batch]:
        for number, batch in enumerate(self.batches, 1):
            if number == 2:
                self.reached.set()
                await self.release.wait()
            self.yielded += 1
            yield batch


class HeldWrites:
    """Counts each batch write's rows; the first write waits until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        self.started, self.gate = threading.Event(), threading.Event()
        real = sync_pass._write_batch

        def held(db, table, clients, connection_id, batch, previous):
            self.sizes.append(len(batch.rows))
            if not self.started.is_set():
                self.started.set()
                self.gate.wait(10)
            return real(db, table, clients, connection_id, batch, previous)

        monkeypatch.setattr(sync_pass, "_write_batch", held)

    def release(self) -> None:
        """Let the first write go on."""
        self.started.set()
        self.gate.set()


async def run_behind_a_busy_writer(hub, plugin, writes: HeldWrites, count: int) -> Any:
    """Run a sync whose first batch is being written (held) while the plugin yields the
    next ones, up to ``count`` in all (they wait for the writer meanwhile). The plugin waits
    before its second batch until released."""
    task = asyncio.create_task(hub.engine.run("scripted:a", trigger="test"))
    try:
        await asyncio.wait_for(plugin.reached.wait(), 5)
        assert await asyncio.to_thread(writes.started.wait, 5)
        plugin.release.set()
        await until(lambda: plugin.yielded == count)
        await asyncio.sleep(0.02)  # the consumer handles the last batch
    finally:
        writes.release()
    return await task


async def test_batches_waiting_for_a_busy_writer_commit_in_one_transaction(make_hub, monkeypatch):
    plugin = ScriptedPlugin(pages=4, wait_at=2)
    hub = await scripted_hub(make_hub, plugin)
    writes = HeldWrites(monkeypatch)
    result = await run_behind_a_busy_writer(hub, plugin, writes, 4)
    assert (result.state, result.created) == ("succeeded", 20)
    assert writes.sizes == [5, 15]  # the first page, then the three that waited for it
    assert (await hub.store.runs.cursors("scripted:a"))["items"].cursor == {"page": 4}
    assert len((await stored_records(hub, "scripted", "scripted:a"))["items"]) == 20


async def test_a_group_that_fails_commits_none_of_its_batches_and_the_next_run_resumes(
    make_hub, monkeypatch
):
    plugin = ScriptedPlugin(pages=4, wait_at=2)
    hub = await scripted_hub(make_hub, plugin)
    real = sync_pass.write_cursor

    def failing(db, connection_id, stream, cursor, generation):
        if cursor == {"page": 4}:
            raise RuntimeError("disk full")
        real(db, connection_id, stream, cursor, generation)

    monkeypatch.setattr(sync_pass, "write_cursor", failing)
    writes = HeldWrites(monkeypatch)
    result = await run_behind_a_busy_writer(hub, plugin, writes, 4)
    assert result.state == "failed" and "disk full" in str(result.error)
    assert writes.sizes == [5, 15]
    assert len((await stored_records(hub, "scripted", "scripted:a"))["items"]) == 5  # page 1
    assert (await hub.store.runs.cursors("scripted:a"))["items"].cursor == {"page": 1}
    monkeypatch.setattr(sync_pass, "write_cursor", real)
    assert (await hub.engine.run("scripted:a", trigger="test")).state == "succeeded"
    assert len((await stored_records(hub, "scripted", "scripted:a"))["items"]) == 20


DELETE_AND_RESTORE = [
    Batch("items", [item(1), item(2), item(3)], cursor={"page": 1}),
    Batch("items", [item(4)], deleted=["1", "2"], cursor={"page": 2}),
    Batch("items", [item(2, name="back")], cursor=None),  # keeps the cursor
    Batch("items", [item(5)], deleted=["4"], cursor={"page": 4}),
]


async def stored_state(hub) -> tuple[dict[str, Any], Any]:
    live = (await stored_records(hub, "scripted", "scripted:a"))["items"]
    cursor = (await hub.store.runs.cursors("scripted:a"))["items"].cursor
    return {key: value["name"] for key, value in live.items()}, cursor


async def test_a_joined_group_stores_what_one_transaction_per_batch_stores(make_hub, monkeypatch):
    """Deleted then stored again, stored then deleted, a batch that keeps the cursor: joined
    or not, the records, tombstones and cursor come out the same."""
    writes = HeldWrites(monkeypatch)
    joined_plugin = SequencePlugin(DELETE_AND_RESTORE)
    joined = await scripted_hub(make_hub, joined_plugin)
    result = await run_behind_a_busy_writer(joined, joined_plugin, writes, 4)
    assert result.state == "succeeded"
    assert writes.sizes == [3, 3]  # ids 1-3, then 4, 2 and 5 in one transaction

    monkeypatch.setattr(sync_pass, "GROUP_BYTES", 0)  # every batch its own transaction
    apart_plugin = SequencePlugin(DELETE_AND_RESTORE)
    apart_plugin.release.set()
    apart = await scripted_hub(make_hub, apart_plugin)
    assert (await apart.engine.run("scripted:a", trigger="test")).state == "succeeded"
    assert writes.sizes[2:] == [3, 1, 1, 1]

    expected = ({"2": "back2", "3": "n3", "5": "n5"}, {"page": 4})
    assert await stored_state(joined) == expected
    assert await stored_state(apart) == expected


async def test_batches_are_not_joined_past_the_group_size(make_hub, monkeypatch):
    monkeypatch.setattr(sync_pass, "GROUP_BYTES", 1)  # a group holds one batch at most
    plugin = ScriptedPlugin(pages=3, wait_at=2)
    hub = await scripted_hub(make_hub, plugin)
    writes = HeldWrites(monkeypatch)
    result = await run_behind_a_busy_writer(hub, plugin, writes, 2)
    assert result.state == "succeeded"
    assert writes.sizes == [5, 5, 5]


async def test_batches_are_not_joined_while_webhook_commits_go_through_the_writer(
    make_hub, monkeypatch
):
    """A webhook commit would wait for a whole group: while urgent work flows, each batch
    is its own transaction."""
    plugin = ScriptedPlugin(pages=3, wait_at=2)
    hub = await scripted_hub(make_hub, plugin)
    assert not hub.store.db.urgent_recently()
    await asyncio.wrap_future(hub.store.db.submit(lambda db: None, urgent=True))
    assert hub.store.db.urgent_recently()
    writes = HeldWrites(monkeypatch)
    result = await run_behind_a_busy_writer(hub, plugin, writes, 2)
    assert result.state == "succeeded"
    assert writes.sizes == [5, 5, 5]
