"""Atomic file writes: readers see the old file or the whole new one, never half of it; and how a full
disk is recognised wherever a write fails."""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a temp file beside `path`; on success it is fsynced and renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as file:
        file.write(data)


def fsync_directory(directory: Path) -> None:
    """Make renames into `directory` durable (before a database row points at the files)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ENOSPC: no space left on the device; EDQUOT: the user's disk quota is used up. Both mean "free some
# space and try again", and an atomic write leaves the previous file as it was.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_MESSAGE = ("The disk is full, so this was not saved. Everything saved before is intact. "
                     "Free some space on the server and try again.")
# A file larger than the process or file system allows (RLIMIT_FSIZE, a FAT32 volume): same remedy.
FILE_TOO_LARGE_MESSAGE = ("The file is larger than the server's disk allows, so it was not saved. "
                          "Everything saved before is intact.")
# SQLite's SQLITE_FULL ("database or disk is full") and PostgreSQL's disk_full SQLSTATE.
_DATABASE_FULL = ("database or disk is full", "53100", "could not extend file", "no space left on device")


def storage_error_message(exc: BaseException | None) -> str | None:
    """DISK_FULL_MESSAGE (or FILE_TOO_LARGE_MESSAGE) when `exc`, or an exception it wraps (`__cause__`,
    `__context__`, SQLAlchemy's `orig`), is a write that failed for lack of space; else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return DISK_FULL_MESSAGE
        if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            return FILE_TOO_LARGE_MESSAGE
        text = f"{getattr(exc, 'sqlstate', '') or ''} {exc}".lower()
        if type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg", "sqlalchemy") and any(
                marker in text for marker in _DATABASE_FULL):
            return DISK_FULL_MESSAGE
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None
