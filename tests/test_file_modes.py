"""The store's files are private to the hub's user (0600), whatever the umask it starts with."""

from __future__ import annotations

import stat
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.daemon import Daemon

pytestmark = pytest.mark.slow
FILES = ("hub.db", "hub.db-wal", "hub.db-shm", "hub.db.key")


def modes(folder: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((folder / name).stat().st_mode) for name in FILES}


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_the_database_its_wal_and_the_key_are_created_0600(tmp_path, reap_daemons, umask):
    async with aiohttp.ClientSession() as session:
        daemon = Daemon(tmp_path, "", umask=umask)
        await daemon.ready(session)
        assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
        assert daemon.stop() == 0


async def test_database_files_open_to_others_are_tightened_with_a_warning(tmp_path, reap_daemons):
    async with aiohttp.ClientSession() as session:
        first = Daemon(tmp_path, "")
        await first.ready(session)
        first.kill()  # leaves the -wal and -shm files behind
        for name in FILES[:3]:
            (tmp_path / name).chmod(0o644)
        second = Daemon(tmp_path, "")
        await second.ready(session)
        assert modes(tmp_path) == dict.fromkeys(FILES, 0o600)
        assert second.stop() == 0
    lines = [orjson.loads(line) for line in (tmp_path / "daemon.log").read_bytes().splitlines()]
    tightened = {
        Path(line["path"]).name: (line["mode"], line["now"])
        for line in lines
        if line.get("event") == "database file was open to group or others: tightened to owner-only"
    }
    assert tightened == dict.fromkeys(FILES[:3], ("0644", "0600"))
