"""Credentials at rest: Fernet with a key from ``HUB_SECRET_KEY`` or a 0600 key file."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

from hub.errors import StoreError
from hub.store.files import check_private, open_private

KEY_FILE_MAX_BYTES = 4096
"""Read at most this much of a key file (a Fernet key is 44 bytes)."""


def key_file_for(database: Path) -> Path:
    """The key file that sits beside ``database`` (``hub.db`` -> ``hub.db.key``)."""
    return database.with_name(database.name + ".key")


def load_or_create_key(configured: str | None, database: Path) -> bytes:
    """Return the Fernet key: the configured one, else the key file (created 0600 if absent).

    :raise StoreError: one line naming the key or the file: not a Fernet key, a key file
        that cannot be read (a directory, a link to nothing), or one that group or others
        may access (the hub refuses it rather than use a key others may have read).
    """
    if configured:
        key = configured.encode()
        _check_key(key, "HUB_SECRET_KEY")
        return key
    path = key_file_for(database)
    if not os.path.lexists(path):
        _create_key_file(path)
    key = _read_key_file(path)
    _check_key(key, str(path))
    return key


def _read_key_file(path: Path) -> bytes:
    """The key file's content, if it is a regular file only its owner may access."""
    try:
        # O_NONBLOCK: a FIFO put in its place must not hang the start (no effect on files)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        reason = exc.strerror
        if isinstance(exc, FileNotFoundError) and path.is_symlink():
            reason = f"a symbolic link to {os.readlink(path)}, which does not exist"
        raise StoreError(f"{path}: cannot read the key file: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
            raise StoreError(f"{path}: cannot read the key file: it is {what}")
        check_private(path, info.st_mode)
        return os.read(fd, KEY_FILE_MAX_BYTES).strip()
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` all at once: it is written and synced under a temporary
    name, then linked into place, so a crash leaves no empty key file and two processes
    starting together end up with the same key (the second link fails; both read the first)."""
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = open_private(temporary)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the key file: {exc.strerror}") from None
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
