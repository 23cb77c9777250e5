"""Credentials at rest: Fernet with a key from ``HUB_SECRET_KEY`` or a 0600 key file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from hub.errors import StoreError


def key_file_for(database: Path) -> Path:
    """The key file that sits beside ``database`` (``hub.db`` -> ``hub.db.key``)."""
    return database.with_name(database.name + ".key")


def load_or_create_key(configured: str | None, database: Path) -> bytes:
    """Return the Fernet key: the configured one, else the key file (created 0600 if absent)."""
    if configured:
        key = configured.encode()
        _check_key(key, "HUB_SECRET_KEY")
        return key
    path = key_file_for(database)
    if not path.exists():
        _create_key_file(path)
    key = path.read_bytes().strip()
    _check_key(key, str(path))
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` all at once: it is written and synced under a temporary
    name, then linked into place, so a crash leaves no empty key file and two processes
    starting together end up with the same key (the second link fails; both read the first)."""
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return  # another process created it first: use theirs
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        temporary.unlink(missing_ok=True)


def _check_key(key: bytes, where: str) -> None:
    try:
        Fernet(key)
    except ValueError:
        raise StoreError(f"{where}: not a Fernet key (32 url-safe base64-encoded bytes)") from None


class Vault:
    """Encrypts and decrypts credential dictionaries."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, credentials: dict[str, Any]) -> bytes:
        """Encrypt a credentials dict to an opaque token."""
        return self._fernet.encrypt(orjson.dumps(credentials))

    def open(self, token: bytes) -> dict[str, Any]:
        """Decrypt a token made by :meth:`seal`."""
        try:
            value: dict[str, Any] = orjson.loads(self._fernet.decrypt(token))
        except InvalidToken:
            raise StoreError(
                "stored credentials cannot be decrypted: the secret key changed "
                "(HUB_SECRET_KEY or the .key file beside the database)"
            ) from None
        return value
