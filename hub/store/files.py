"""The store's files on disk: private to the hub's user (0600), whatever the umask.

The database holds synced client data and the key file decrypts stored credentials, so
neither may be readable by the file's group or by others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from hub.errors import StoreError

log = structlog.get_logger("hub.store")

PRIVATE = 0o600
SHARED = 0o077
"""The permission bits of the file's group and of others."""
DATABASE_SUFFIXES = ("", "-wal", "-shm")
"""The database and the files SQLite keeps beside it in WAL mode."""


def real_path(path: Path) -> Path:
    """``path`` with symbolic links, ``..`` and the working directory resolved: one name per
    file, however it was given."""
    return Path(os.path.realpath(path))


def open_private(path: Path) -> int:
    """Create ``path`` for writing with mode exactly 0600 and return its descriptor.

    The mode is set on the open descriptor, so neither the umask nor a moment of looser
    permissions can expose the file.

    :raise FileExistsError: something is at ``path`` already (a symbolic link included).
    :raise OSError: the file cannot be created (a missing or read-only folder).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE)
    try:
        os.fchmod(fd, PRIVATE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def prepare_database(path: Path) -> None:
    """Before SQLite opens ``path``: create the database file 0600 (SQLite gives its ``-wal``
    and ``-shm`` files the database file's mode), and take group and others' permissions
    off existing ones, with a warning.

    Only names are used (no descriptor of an existing database is opened): closing one would
    drop the SQLite locks of this process's connections.

    :raise StoreError: the database file cannot be created.
    """
    real = real_path(path)
    try:
        os.close(open_private(real))
    except FileExistsError:
        pass  # an existing database: its modes are checked below
    except OSError as exc:
        raise StoreError(f"{path}: cannot create database: {exc.strerror}") from None
    for suffix in DATABASE_SUFFIXES:
        _tighten(Path(f"{real}{suffix}"))


def _tighten(path: Path) -> None:
    """Take group and others' permissions off the regular file ``path``, if it has any."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode) or not mode & SHARED:
        return
    try:
        os.chmod(path, mode & ~SHARED)
    except OSError as exc:
        log.warning(
            "database file is open to group or others and cannot be tightened",
            path=str(path),
            mode=f"{mode:04o}",
            error=exc.strerror,
        )
        return
    log.warning(
        "database file was open to group or others: tightened to owner-only",
        path=str(path),
        mode=f"{mode:04o}",
        now=f"{mode & ~SHARED:04o}",
    )


def check_private(path: Path, mode: int) -> None:
    """Refuse a key file (``mode`` from its ``fstat``) that group or others may access.

    :raise StoreError: naming the file and the command that fixes it.
    """
    if mode & SHARED:
        raise StoreError(
            f"{path}: key file open to group or others (mode {stat.S_IMODE(mode):04o}); "
            f"make it private with: chmod 600 {path}"
        )
