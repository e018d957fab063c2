"""Writing caption files: atomic, versioned and serialised, and the originals kept.

Writes are UTF-8 without BOM with `\\n` newlines, at most `MAX_CAPTION_BYTES`, atomic (temp file +
fsync + rename) and keep the file's mode and owner. A write can carry the version the editor saw
(`captions.caption_version`, a content hash): the check and the replace run under `folder_lock`,
an OS lock on a hidden file in the caption's own folder, so of several writers holding one version
exactly one wins, across threads, processes and hosts that share the folder.
"""
import fcntl
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.atomic import fsync_directory, storage_error_message
from app.datasets.captions import (MAX_CAPTION_BYTES, CaptionConflict, CaptionTooLarge, CaptionWriteError,
                                   caption_version, decode_caption, read_caption_bytes)

# The hidden file whose OS lock serialises caption writes within one folder (see folder_lock).
LOCK_NAME = ".tessera-captions.lock"
# fcntl locks belong to a process, so threads of one process also take one of these first.
_thread_locks = [threading.Lock() for _ in range(64)]


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold the exclusive caption-write lock of `folder` (threads, processes, and hosts over NFS).

    An fcntl record lock on `folder/.tessera-captions.lock`: it lives with the captions, so every
    machine that can write them sees it; the OS drops it when a process dies. Raises
    `CaptionWriteError` if the folder cannot hold the lock file (then it cannot hold captions).
    """
    folder = Path(folder)
    with _thread_locks[hash(os.fspath(folder)) % len(_thread_locks)]:
        try:
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise CaptionWriteError(f"Cannot lock the folder to save captions: {exc.strerror or exc}") from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def current_version(path: Path, *, resolved: bool = False) -> tuple[str | None, bytes | None]:
    """(version, bytes) of the caption at `path` now; (None, None) if there is no file.
    `resolved`: `path` is already real (see `captions.read_caption_bytes`)."""
    try:
        data = read_caption_bytes(path, resolved=resolved)
    except FileNotFoundError:
        return None, None
    except CaptionTooLarge as exc:
        # A file too large to read still has a version no editor can hold: any save conflicts.
        return f"too-large-{exc.size}", None
    return caption_version(data), data


def check_writable(target: Path, current: os.stat_result | None, *, folder_checked: bool = False) -> None:
    """Raise `CaptionWriteError` when the caption file (`current`: its stat, None if absent) or,
    unless `folder_checked`, its folder cannot be written."""
    # Mode bits are checked as well as access(): a server running as root would otherwise ignore
    # a file or folder the user deliberately made read-only.
    if current is not None and (not current.st_mode & 0o222 or not os.access(target, os.W_OK)):
        raise CaptionWriteError(f"Caption file is read-only: {os.path.basename(target)}")
    if folder_checked:
        return
    parent = os.path.dirname(target)
    try:
        folder = os.stat(parent)
    except FileNotFoundError:
        raise CaptionWriteError(f"The folder of {os.path.basename(target)} does not exist") from None
    if not folder.st_mode & 0o222 or not os.access(parent, os.W_OK | os.X_OK):
        raise CaptionWriteError(f"The folder of {os.path.basename(target)} is read-only, cannot save captions in it")


UNCHECKED = object()  # write_caption without a version check


@dataclass(frozen=True)
class Written:
    version: str  # caption_version of the bytes written
    mtime_ns: int
    size: int | None = None  # bytes on disk after the write (what the index stores to notice later edits)


def encode_caption(text: str) -> bytes:
    """Caption text as written: UTF-8 without BOM, `\\n` newlines. Raises `CaptionTooLarge`."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff").encode("utf-8")
    if len(data) > MAX_CAPTION_BYTES:
        raise CaptionTooLarge("The caption", len(data))
    return data


def write_caption(path: Path, text: str, *, expected_version: str | None | object = UNCHECKED,
                  locked: bool = False) -> Written:
    """Atomically write `text` as UTF-8 (no BOM, `\\n` newlines); returns the new version and mtime.

    `expected_version` is the `caption_version` the editor loaded (None: there was no file); if
    the file holds anything else now, `CaptionConflict` is raised and nothing is written. The
    check and the replace run under `folder_lock` (pass `locked=True` when the caller already
    holds it), so of several writers holding one version exactly one succeeds, whichever process
    or host it runs on. A symlinked caption is written through to its target so the link survives.
    Failures raise `CaptionWriteError` (`CaptionTooLarge` for a caption over the size limit).
    """
    target = Path(os.path.realpath(path))
    data = encode_caption(text)
    try:
        current = os.stat(target)
    except FileNotFoundError:
        current = None
    check_writable(target, current)
    if locked:
        return _replace(target, data, expected_version)
    with folder_lock(target.parent):
        return _replace(target, data, expected_version)


def _replace(target: Path, data: bytes, expected_version: str | None | object) -> Written:
    """Check the version and put `data` in place of `target` (the folder lock is held)."""
    if expected_version is not UNCHECKED:
        version, on_disk = current_version(target)
        if version != expected_version:
            text_now = decode_caption(on_disk).text if on_disk is not None else None
            raise CaptionConflict(target, text_now, version)
    try:
        current = os.stat(target)
    except FileNotFoundError:
        current = None
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        try:
            # New files get 0o666 minus the umask, like any editor would create them.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if current is not None:
                os.chmod(tmp, stat.S_IMODE(current.st_mode))
                if os.name == "posix" and (current.st_uid, current.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.chown(tmp, current.st_uid, current.st_gid)
                    except PermissionError:
                        pass  # only root may give a file away; keeping our ownership is fine
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_directory(target.parent)
    except OSError as exc:
        full = storage_error_message(exc)
        raise CaptionWriteError(full or f"Could not save {target.name}: {exc.strerror or exc}",
                                disk_full=bool(full)) from exc
    after = os.stat(target)
    return Written(caption_version(data), after.st_mtime_ns, after.st_size)


def backup_original(path: Path, backup_root: Path, relpath: str | None = None) -> Path | None:
    """Copy a caption's original content into `backup_root` once, before its first overwrite.

    The backup lives at `backup_root/relpath` (default: the file's absolute path, mirrored), and
    is never replaced afterwards, so it always holds the version from before Tessera touched it.
    Returns the backup's path, or None if there is no original file to keep.
    """
    source = Path(path)
    if not source.is_file():
        return None
    if relpath is None:
        absolute = Path(os.path.abspath(source))
        relpath = absolute.relative_to(absolute.anchor).as_posix()
    if Path(relpath).is_absolute() or ".." in Path(relpath).parts:
        raise ValueError(f"Backup path must stay inside the backup folder: {relpath}")
    backup = Path(backup_root) / relpath
    if backup.exists():
        return backup
    backup.parent.mkdir(parents=True, exist_ok=True)
    tmp = backup.with_name(f".{backup.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        shutil.copy2(source, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # link() fails if another request made the backup meanwhile, so the first copy is kept;
        # filesystems without hard links fall back to a rename.
        try:
            os.link(tmp, backup)
        except FileExistsError:
            pass
        except OSError:
            if not backup.exists():
                os.replace(tmp, backup)
    finally:
        tmp.unlink(missing_ok=True)
    return backup
