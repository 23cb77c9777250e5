"""Writing records outside a sync (``Hub.write_records``) and full re-reads inside an
incremental run (``Batch.full``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from hub import hookimpl
from hub.model import Batch, Integration, Stream
from hub.testing import stored_records

CONNECTION = "notes:a"


class NotesPlugin:
    """A provider of ``notes`` whose sync the test scripts batch by batch."""

    def __init__(self) -> None:
        self.script: list[Batch] = []
        self.gate: asyncio.Event | None = None

    @hookimpl
    def register(self) -> Integration:
        return Integration(
            "notes", "Notes", streams=[Stream("notes", key="id", columns={"text": "text"})]
        )

    @hookimpl
    async def sync(self, streams: Sequence[str], cursors: dict[str, Any]) -> AsyncIterator[Batch]:
        for index, batch in enumerate(self.script):
            if index == 1 and self.gate is not None:
                await self.gate.wait()
            yield batch


def note(i: int, text: str = "") -> dict[str, Any]:
    return {"id": str(i), "text": text or f"note {i}"}


async def notes_hub(make_hub, plugin: NotesPlugin):
    hub = await make_hub(plugins=[plugin])
    connection = await hub.add_connection("notes", "a", "A", {}, origin="test")
    return hub, connection


async def test_write_records_upserts_and_tombstones_without_cursors(make_hub):
    plugin = NotesPlugin()
    hub, connection = await notes_hub(make_hub, plugin)
    counts = await hub.write_records(connection, "notes", [note(1), note(2)])
    assert (counts.created, counts.updated, counts.deleted) == (2, 0, 0)
    counts = await hub.write_records(connection, "notes", [note(1, "changed")], deleted=["2"])
    assert (counts.created, counts.updated, counts.deleted) == (0, 1, 1)
    assert (await stored_records(hub, "notes", CONNECTION))["notes"] == {"1": note(1, "changed")}
    assert await hub.store.runs.cursors(CONNECTION) == {}
    with pytest.raises(KeyError):
        await hub.write_records(connection, "nope", [])


async def test_write_records_brings_the_table_up_to_date_once_per_process(make_hub, monkeypatch):
    """Webhook handlers call it per event: the table is created or checked the first time
    only (its DDL and bookkeeping write cost more than a few rows)."""
    from hub.store.records import RecordTable

    created: list[str] = []
    original = RecordTable.create
    monkeypatch.setattr(
        RecordTable, "create", lambda self, *a: created.append(self.name) or original(self, *a)
    )
    hub, connection = await notes_hub(make_hub, NotesPlugin())
    for number in range(3):
        await hub.write_records(connection, "notes", [note(number)])
    assert created == ["records_notes_notes"]
    assert len((await stored_records(hub, "notes", CONNECTION))["notes"]) == 3


async def test_records_written_during_a_full_sync_are_not_swept(make_hub):
    plugin = NotesPlugin()
    hub, connection = await notes_hub(make_hub, plugin)
    await hub.write_records(connection, "notes", [note(1), note(9)])
    plugin.script = [Batch("notes", [note(1)], cursor={"n": 1}), Batch("notes", [note(2)])]
    plugin.gate = asyncio.Event()
    run = asyncio.create_task(hub.engine.run(CONNECTION, full=True))
    await asyncio.sleep(0.05)  # the full sync is between its batches
    await hub.write_records(connection, "notes", [note(3)])  # e.g. a webhook's re-fetch
    plugin.gate.set()
    result = await run
    assert (result.state, result.deleted) == ("succeeded", 1)  # 9 vanished; 3 stays
    assert set((await stored_records(hub, "notes", CONNECTION))["notes"]) == {"1", "2", "3"}


async def test_a_full_batch_turns_one_stream_into_a_full_reread(make_hub):
    plugin = NotesPlugin()
    hub, _ = await notes_hub(make_hub, plugin)
    plugin.script = [Batch("notes", [note(i) for i in range(1, 6)], cursor={"since": 1})]
    assert (await hub.engine.run(CONNECTION)).state == "succeeded"
    plugin.script = [Batch("notes", [note(2, "new")], cursor={"since": 2})]
    result = await hub.engine.run(CONNECTION)  # incremental: nothing is swept
    assert (result.updated, result.deleted) == (1, 0)

    plugin.script = [
        Batch("notes", [note(1), note(2, "new")], cursor={"page": 1}, full=True),
        Batch("notes", [note(4)], cursor={"page": 2}, full=True),
    ]
    plugin.gate = asyncio.Event()
    run = asyncio.create_task(hub.engine.run(CONNECTION))
    await asyncio.sleep(0.05)
    cursor = (await hub.store.runs.cursors(CONNECTION))["notes"]
    assert cursor.cursor == {"page": 1} and cursor.full_generation is not None  # resumable
    plugin.gate.set()
    result = await run
    assert (result.state, result.deleted) == ("succeeded", 2)  # 3 and 5 were not re-read
    assert set((await stored_records(hub, "notes", CONNECTION))["notes"]) == {"1", "2", "4"}
    cursor = (await hub.store.runs.cursors(CONNECTION))["notes"]
    assert cursor.cursor == {"page": 2} and cursor.full_generation is None
