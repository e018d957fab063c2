"""Writing many captions at once: each file replaced atomically, the batch made durable with one sync.

`captionwrite.write_caption` fsyncs every file and its folder: about 1 ms per caption here, so a
rename across 10,000 captions would take over 10 s. A batch writes every temp file first, syncs
the filesystem once, then, holding each folder's `folder_lock` once, checks every caption's
version and renames it into place, and syncs each folder once. The guarantees are the same per
file (UTF-8 without BOM, `\\n`, at most MAX_CAPTION_BYTES, mode and owner kept, a file whose
content changed since it was read is a conflict, read-only files are refused); a crash before the renames
leaves only hidden temp files behind. Each caption's original is kept before its first overwrite,
where and as `captionwrite.backup_original` keeps it (first one wins), but without an fsync per file.
"""
import ctypes
import os
import shutil
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.atomic import fsync_directory
from app.datasets.captions import CaptionConflict, CaptionWriteError, caption_version, decode_caption
from app.datasets.captionwrite import Written, check_writable, current_version, encode_caption, folder_lock


@dataclass(frozen=True)
class CaptionWrite:
    path: str | Path  # real (symlink-free), as resolve_within returns it
    text: str | None  # None deletes the caption file (undoing a caption that did not exist)
    expected_version: str | None  # the caption_version read; None means the file must not exist
    # Where the original is kept before its first overwrite (see captionwrite.backup_original).
    backup_root: str | Path | None = None
    backup_relpath: str | None = None


@dataclass
class BatchOutcome:
    written: dict[int, Written | None] = field(default_factory=dict)  # index -> new version (None: deleted)
    conflicts: dict[int, CaptionConflict] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _conflict(target: str, version: str | None, data: bytes | None) -> CaptionConflict:
    text = decode_caption(data).text if data is not None else None
    return CaptionConflict(Path(target), text, version)


def _stage(tmp: str, data: bytes, current: os.stat_result | None) -> None:
    """Write `data` to `tmp` with the target's mode and owner (changed only when they differ,
    since every metadata change is another journal write)."""
    mode = stat.S_IMODE(current.st_mode) if current is not None else 0o666
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            written = os.fstat(fd)
            if current is not None:
                if stat.S_IMODE(written.st_mode) != mode:  # the umask took bits away
                    os.fchmod(fd, mode)
                if os.name == "posix" and (current.st_uid, current.st_gid) != (written.st_uid, written.st_gid):
                    try:
                        os.fchown(fd, current.st_uid, current.st_gid)
                    except PermissionError:
                        pass  # only root may give a file away; keeping our ownership is fine
    except BaseException:
        _discard(tmp)
        raise


def _sync(paths: list[str]) -> None:
    """Make the staged files durable: one syncfs per filesystem on Linux, else fsync each."""
    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None) if os.name == "posix" else None
    if syncfs is None:
        for path in paths:
            _fsync(path)
        return
    one_per_folder = {os.path.dirname(path): path for path in paths}
    synced_devices: set[int] = set()
    for folder, path in one_per_folder.items():
        device = os.stat(folder).st_dev
        if device in synced_devices:
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            ok = syncfs(fd) == 0
        finally:
            os.close(fd)
        if not ok:  # fall back to syncing this device's files one by one
            for other in paths:
                if os.stat(os.path.dirname(other)).st_dev == device:
                    _fsync(other)
        synced_devices.add(device)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _backup_path(write: CaptionWrite) -> str | None:
    """Where to keep this caption's original, or None when no backup is wanted or one exists."""
    if write.backup_root is None or write.backup_relpath is None:
        return None
    relpath = write.backup_relpath
    if relpath.startswith("/") or ".." in relpath.split("/"):
        raise ValueError(f"Backup path must stay inside the backup folder: {relpath}")
    backup = os.path.join(write.backup_root, relpath)
    return None if os.path.exists(backup) else backup


@dataclass
class _Staged:
    index: int
    target: str
    tmp: str | None  # the new content; None deletes the target
    version: str | None
    backup: str | None  # to be made from the original just before it is replaced
    backup_copy: str | None  # a copy staged when the backup lives on another filesystem


def write_captions(writes: Sequence[CaptionWrite]) -> BatchOutcome:
    """Apply `writes`; every one ends in `written`, `conflicts` or `errors` (keyed by its index).

    A backup is a hard link to the original file: the rename gives the target a new inode, so the
    backup keeps the original bytes without copying them. When the backup folder is on another
    filesystem the original is copied while staging and synced with the rest.
    """
    outcome = BatchOutcome()
    staged: list[_Staged] = []
    devices: dict[str, int] = {}  # backup folder -> st_dev
    batch = uuid.uuid4().hex[:12]  # temp names: one random part per batch, then a counter
    folders_checked: set[str] = set()  # folders found writable: checked once per batch, not per file
    for index, write in enumerate(writes):
        target = os.fspath(write.path)
        tmp = backup_copy = new_version = None
        try:
            version, data = current_version(target, resolved=True)
            if version != write.expected_version:  # checked again under the lock; this saves staging
                outcome.conflicts[index] = _conflict(target, version, data)
                continue
            if write.text is None and version is None:
                outcome.written[index] = None  # already absent
                continue
            current = _stat(target)
            parent = os.path.dirname(target)
            check_writable(target, current, folder_checked=parent in folders_checked)
            folders_checked.add(parent)
            backup = _backup_path(write) if current is not None else None
            if backup is not None:
                folder = os.path.dirname(backup)
                if folder not in devices:
                    os.makedirs(folder, exist_ok=True)
                    devices[folder] = os.stat(folder).st_dev
                if devices[folder] != current.st_dev:
                    backup_copy = os.path.join(folder, f".{os.path.basename(backup)}.{batch}-{index}.tmp")
                    shutil.copy2(target, backup_copy)
            if write.text is not None:
                folder, name = os.path.split(target)
                tmp = os.path.join(folder, f".{name}.{batch}-{index}.tmp")
                encoded = encode_caption(write.text)
                _stage(tmp, encoded, current)
                new_version = caption_version(encoded)
        except (CaptionWriteError, OSError, ValueError) as exc:
            _discard(backup_copy)
            reason = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
            outcome.errors[index] = reason if isinstance(exc, CaptionWriteError) else f"Could not save {os.path.basename(target)}: {reason}"
            continue
        staged.append(_Staged(index, target, tmp, new_version, backup, backup_copy))

    _sync([path for item in staged for path in (item.tmp, item.backup_copy) if path is not None])
    by_folder: dict[str, list[_Staged]] = {}
    for item in staged:
        by_folder.setdefault(os.path.dirname(item.target), []).append(item)
    folders: set[str] = set()
    for folder, items in by_folder.items():
        try:
            with folder_lock(Path(folder)):
                for item in items:
                    if _replace(item, writes[item.index].expected_version, outcome, folders):
                        folders.add(folder)
        except CaptionWriteError as exc:  # the lock itself failed: nothing of this folder was replaced
            for item in items:
                if item.index not in outcome.written and item.index not in outcome.conflicts:
                    outcome.errors[item.index] = exc.message
                    _discard(item.tmp, item.backup_copy)
    for folder in folders:
        fsync_directory(Path(folder))
    return outcome


def _replace(item: _Staged, expected_version: str | None, outcome: BatchOutcome, folders: set[str]) -> bool:
    """Check the version and put one staged caption in place (the folder lock is held)."""
    try:
        version, data = current_version(item.target, resolved=True)
    except OSError as exc:  # e.g. the file was replaced by a symlink since it was resolved
        outcome.errors[item.index] = f"Could not save {os.path.basename(item.target)}: {exc.strerror or exc}"
        _discard(item.tmp, item.backup_copy)
        return False
    if version != expected_version:
        outcome.conflicts[item.index] = _conflict(item.target, version, data)
        _discard(item.tmp, item.backup_copy)
        return False
    linked_live = None
    try:
        if item.backup is not None:
            try:
                os.link(item.backup_copy or item.target, item.backup)
                linked_live = None if item.backup_copy else item.backup
                folders.add(os.path.dirname(item.backup))
            except FileExistsError:
                pass  # a backup made meanwhile is the older one: keep it
        if item.tmp is None:
            os.unlink(item.target)
        else:
            os.replace(item.tmp, item.target)
    except OSError as exc:
        outcome.errors[item.index] = f"Could not save {os.path.basename(item.target)}: {exc.strerror or exc}"
        _discard(item.tmp, linked_live)  # a link to the file that stays is no backup
        return False
    finally:
        _discard(item.backup_copy)
    if item.tmp is None:
        outcome.written[item.index] = None
    else:
        after = os.stat(item.target)
        outcome.written[item.index] = Written(item.version, after.st_mtime_ns, after.st_size)
    return True


def _discard(*paths: str | None) -> None:
    for path in paths:
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
