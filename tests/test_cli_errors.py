"""Start-up errors as a user sees them from the command line: one line on stderr, exit 1, no
traceback, and never the value of a setting (any of them may be a secret)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret-value-0123456789"
Setup = Callable[[Path], dict[str, str]]


def run_cli(folder: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m hub.cli ARGS`` in ``folder`` with only ``env`` as ``HUB_`` variables."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        cwd=folder,
        env={**clean, "PYTHONPATH": str(ROOT), "HUB_SERVER__PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, content: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    return path


def secret_file(variable: str, content: bytes) -> Setup:
    """``variable`` names a file holding ``content``."""
    return lambda folder: {variable: str(write(folder / "secret.txt", content))}


def key_file(make: Callable[[Path], object]) -> Setup:
    """The store in ``folder/data``, its key file made by ``make(path)``."""

    def setup(folder: Path) -> dict[str, str]:
        (folder / "data").mkdir()
        make(folder / "data" / "hub.db.key")
        return {"HUB_STORE__PATH": "data/hub.db"}

    return setup


def open_key(mode: int) -> Setup:
    """A valid key in a key file with ``mode``."""
    return key_file(lambda path: write(path, Fernet.generate_key(), mode))


CASES: dict[str, tuple[Setup, str]] = {
    "a value where a section belongs": (
        lambda _: {"HUB_WEBHOOKS__GENERIC__ZAPIER": SECRET},
        "environment (HUB_WEBHOOKS__GENERIC__ZAPIER): webhooks.generic.zapier: should be a "
        "table (a section of keys), got a string",
    ),
    "a wrongly typed value": (
        lambda _: {"HUB_SERVER__PORT": SECRET},
        "environment (HUB_SERVER__PORT): server.port: Input should be a valid integer, unable "
        "to parse string as an integer (got a string)",
    ),
    "a list that is not JSON": (
        lambda _: {"HUB_PLUGINS__ALLOW": SECRET},
        "environment (HUB_PLUGINS__ALLOW): plugins.allow: not valid JSON (a list or table in a "
        """variable is written as JSON, e.g. '["a", "b"]')""",
    ),
    "a wrongly typed value from a secret file": (
        secret_file("HUB_WEBHOOKS__MAX_ATTEMPTS_FILE", SECRET.encode()),
        "environment (HUB_WEBHOOKS__MAX_ATTEMPTS_FILE): webhooks.max_attempts: Input should be "
        "a valid integer, unable to parse string as an integer (got a string)",
    ),
    "a secret file that is not UTF-8": (
        secret_file("HUB_ADMIN__TOKEN_FILE", b"\xff" + SECRET.encode()),
        "HUB_ADMIN__TOKEN_FILE: cannot read {folder}/secret.txt: not UTF-8 text",
    ),
    "a secret file that is a directory": (
        lambda folder: {"HUB_ADMIN__TOKEN_FILE": str(folder)},
        "HUB_ADMIN__TOKEN_FILE: cannot read {folder}: Is a directory",
    ),
    "a key file that is a directory": (
        key_file(Path.mkdir),
        "data/hub.db.key: cannot read the key file: it is a directory",
    ),
    "a key file that is a dangling symlink": (
        key_file(lambda path: path.symlink_to("gone.key")),
        "data/hub.db.key: cannot read the key file: a symbolic link to gone.key, which does "
        "not exist",
    ),
    "a key file that is not a key": (
        key_file(lambda path: write(path, b"\xff" + SECRET.encode())),
        "data/hub.db.key: not a Fernet key (32 url-safe base64-encoded bytes)",
    ),
    "a key file others may read": (
        open_key(0o644),
        "data/hub.db.key: key file open to group or others (mode 0644); make it private with: "
        "chmod 600 data/hub.db.key",
    ),
    "a key file its group may write": (
        open_key(0o620),
        "data/hub.db.key: key file open to group or others (mode 0620); make it private with: "
        "chmod 600 data/hub.db.key",
    ),
}


@pytest.mark.parametrize("command", ["check", "serve"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_start_up_error_is_one_line_without_the_value(tmp_path: Path, case: str, command: str):
    setup, expected = CASES[case]
    result = run_cli(tmp_path, command, env=setup(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "advisoros-hub: error: " + expected.format(folder=tmp_path)
    ]
    assert "Traceback" not in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_key_file_others_may_read_is_left_as_it_is(tmp_path: Path):
    setup = open_key(0o644)
    assert run_cli(tmp_path, "check", env=setup(tmp_path)).returncode == 1
    assert (tmp_path / "data" / "hub.db.key").stat().st_mode & 0o777 == 0o644
