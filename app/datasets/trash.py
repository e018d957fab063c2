"""A trash folder inside the dataset: deleting an image moves it there, and it can be put back.

Each deletion is one folder `<root>/.tessera-trash/<stamp>-<n>/` holding the image (and its caption
files, `a.txt` and `a.caption` alike, when no other image shares them) under their dataset-relative
paths, plus `entry.json` saying what goes back where. The folder is hidden, so scans skip it, and it stays on the dataset's own disk, so
moving in and out is a rename and never a copy.

The trash is read a page at a time (entry names sort by when they were made, so a page reads only its
own entries), and emptied for good only on the user's word, up to the newest entry they saw: what
is trashed meanwhile stays. Only entries Tessera made (`ENTRY_NAME`) are listed or deleted; a
symlink is removed as a link, never followed; `.tessera-trash` itself must be a real folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat as stat_module
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from app.datasets.captions import CAPTION_EXTS
from app.datasets.paths import PathRefused, resolve_within
from app.datasets.scan import IMAGE_EXTS

TRASH = ".tessera-trash"
ENTRY_NAME = re.compile(r"(\d{8}-\d{6})-(\d{1,9})")
PAGE = 50
_HASH = re.compile(r"[0-9a-f]{16,128}")


@dataclass(frozen=True)
class TrashEntry:
    name: str  # the entry's folder name, what `restore` takes
    image: str  # dataset-relative path the image came from
    caption: str | None  # its caption's relative path, if that went to the trash too
    deleted_at: str  # ISO 8601, UTC
    content_hash: str | None = None  # the image's index hash when trashed: its grid thumbnail's key
    more_captions: tuple[str, ...] = ()  # other caption files of the image that went too (a.caption beside a.txt)

    @property
    def captions(self) -> tuple[str, ...]:
        """Every caption file in the entry, the one Tessera used first."""
        return ((self.caption,) if self.caption else ()) + self.more_captions

    def as_json(self) -> dict:
        return {"name": self.name, "image": self.image, "caption": self.caption, "deleted_at": self.deleted_at,
                "content_hash": self.content_hash, "more_captions": list(self.more_captions)}


@dataclass(frozen=True)
class OwnCaptions:
    captions: tuple[str, ...]  # dataset-relative caption files beside the image that fit its name
    shared_with: tuple[str, ...]  # other images in that folder with the same name stem (they pair with them too)


def own_captions(root: Path, image_relpath: str) -> OwnCaptions:
    """The caption files on disk that belong to an image: every `<stem><ext>` for the caption
    extensions (`CAPTION_EXTS`), letter case ignored as pairing ignores it (`a.txt`, `a.caption`,
    `A.TXT`), and the other images that would pair with the same files (`a.jpg` beside `a.png`).

    Read from the folder itself, not the index, so files the last scan did not see count too.
    Raises PathRefused for a path outside the dataset; a missing folder gives no captions.
    """
    image = resolve_within([Path(root)], image_relpath)
    folder = PurePosixPath(image_relpath).parent
    stem = os.path.splitext(image.name)[0].casefold()
    wanted = {(stem + ext).casefold() for ext in CAPTION_EXTS}
    captions, others = [], []
    try:
        with os.scandir(image.parent) as found:
            for item in found:
                if item.name == image.name or not item.is_file(follow_symlinks=False):
                    continue
                name, ext = os.path.splitext(item.name)
                if item.name.casefold() in wanted:
                    captions.append((folder / item.name).as_posix())
                elif ext.lower() in IMAGE_EXTS and name.casefold() == stem:
                    others.append((folder / item.name).as_posix())
    except FileNotFoundError:
        pass
    return OwnCaptions(tuple(sorted(captions)), tuple(sorted(others)))


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target.name} exists already")
    os.rename(source, target)


def _move_all(moves: list[tuple[Path, Path]]) -> None:
    """Move each (source, target), all or nothing: on an OSError what moved is put back, and it is raised."""
    done = []
    try:
        for source, target in moves:
            _move(source, target)
            done.append((source, target))
    except OSError:
        for source, target in reversed(done):
            os.rename(target, source)
        raise


def move_to_trash(root: Path, image_relpath: str, caption_relpath: str | None, *,
                  content_hash: str | None = None, more_captions: tuple[str, ...] = ()) -> TrashEntry:
    """Move an image (and `caption_relpath` and `more_captions`, if given) into a new trash entry.

    Pass no caption when other images share it (`own_captions` says); `content_hash` (the index's)
    lets the trash page show the image's thumbnail. Caption files already gone are left out of the
    entry. Raises PathRefused for a path outside the dataset, FileNotFoundError if the image is
    gone, OSError for other file errors; on an error nothing stays half-moved.
    """
    root = Path(root)
    image = resolve_within([root], image_relpath)
    caption = resolve_within([root], caption_relpath) if caption_relpath else None
    extra = [(relpath, resolve_within([root], relpath)) for relpath in more_captions if relpath != caption_relpath]
    if not image.is_file():
        raise FileNotFoundError(f"{image_relpath} is not there any more")
    stamp = datetime.now(timezone.utc)
    base = root / TRASH
    base.mkdir(exist_ok=True)
    n = 1
    while True:
        folder = base / f"{stamp:%Y%m%d-%H%M%S}-{n}"
        try:
            folder.mkdir()
            break
        except FileExistsError:
            n += 1
    entry = TrashEntry(folder.name, image_relpath, caption_relpath if caption and caption.is_file() else None,
                       stamp.isoformat(timespec="seconds"), content_hash,
                       tuple(relpath for relpath, path in extra if path.is_file()))
    (folder / "entry.json").write_text(json.dumps(entry.as_json()), encoding="utf-8")
    moves = [(image, folder / "files" / image_relpath)]
    moves += [(resolve_within([root], relpath), folder / "files" / relpath) for relpath in entry.captions]
    try:
        _move_all(moves)
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return entry


def _base(root: Path) -> Path | None:
    """The trash folder, None when there is none; PathRefused when it is a symlink or no folder."""
    base = Path(root) / TRASH
    try:
        mode = os.lstat(base).st_mode
    except FileNotFoundError:
        return None
    if not stat_module.S_ISDIR(mode):
        raise PathRefused(f"{TRASH} in the dataset folder is not a folder (a link or a file); Tessera leaves it alone")
    return base


def _order(name: str) -> tuple[str, int]:
    match = ENTRY_NAME.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else ("", -1)


def entry_names(root: Path) -> list[str]:
    """The names of the trash's entries, newest first: real folders named as Tessera names them."""
    base = _base(root)
    if base is None:
        return []
    with os.scandir(base) as found:
        names = [e.name for e in found if ENTRY_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False)]
    return sorted(names, key=_order, reverse=True)


def read_entry(root: Path, name: str) -> TrashEntry:
    """One entry, read from its `entry.json`. KeyError for a name that is no entry, or an unreadable one."""
    base = _base(root)
    if base is None or not ENTRY_NAME.fullmatch(name or "") or not (base / name).is_dir() or (base / name).is_symlink():
        raise KeyError(name)
    try:
        data = json.loads((base / name / "entry.json").read_text(encoding="utf-8"))
        digest = data.get("content_hash")
        digest = digest if isinstance(digest, str) and _HASH.fullmatch(digest) else None
        more = data.get("more_captions") or []
        if not isinstance(more, list) or not all(isinstance(m, str) for m in more):
            raise TypeError("more_captions is no list of paths")
        return TrashEntry(name, str(data["image"]), data.get("caption"), str(data.get("deleted_at", "")), digest,
                          tuple(more))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyError(name) from exc


def list_trash(root: Path) -> list[TrashEntry]:
    """The trash entries of a dataset, newest first (unreadable entries are skipped)."""
    entries = []
    for name in entry_names(root):
        try:
            entries.append(read_entry(root, name))
        except KeyError:
            continue
    return entries


def trashed_image(root: Path, entry: TrashEntry) -> Path:
    """The trashed image's file inside its entry. Raises PathRefused if it leads out of the entry."""
    folder = Path(root) / TRASH / entry.name
    path = resolve_within([folder / "files"], entry.image)
    if not path.is_relative_to(os.path.realpath(folder)):
        raise PathRefused(f"Trash entry {entry.name} points outside itself")
    return path


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) under `folder`, links counted as themselves and never followed."""
    total = files = 0
    pending = [os.fspath(folder)]
    while pending:
        try:
            with os.scandir(pending.pop()) as found:
                for item in found:
                    if item.is_dir(follow_symlinks=False):
                        pending.append(item.path)
                    else:
                        total += item.stat(follow_symlinks=False).st_size
                        files += 1
        except OSError:
            continue
    return total, files


@dataclass(frozen=True)
class TrashItem:
    entry: TrashEntry | None  # None: an entry whose entry.json cannot be read (it can still be emptied)
    name: str
    size: int  # bytes


@dataclass(frozen=True)
class TrashPage:
    items: list[TrashItem]
    total: int  # entries in the whole trash
    page: int  # 1-based
    pages: int


@dataclass(frozen=True)
class TrashSummary:
    count: int
    size: int  # bytes
    through: str | None  # the newest entry counted: emptying stops there


def trash_page(root: Path, page: int = 1, per_page: int = PAGE) -> TrashPage:
    """One page of the trash, newest first, with each entry's size; reads only that page's entries."""
    names = entry_names(root)
    pages = max(1, -(-len(names) // per_page))
    page = min(max(page, 1), pages)
    base = Path(root) / TRASH
    items = []
    for name in names[(page - 1) * per_page:page * per_page]:
        try:
            entry = read_entry(root, name)
        except KeyError:
            entry = None
        items.append(TrashItem(entry, name, folder_size(base / name)[0]))
    return TrashPage(items, len(names), page, pages)


def trash_summary(root: Path, through: str | None = None) -> TrashSummary:
    """How many entries, and how many bytes, the trash holds (up to and including `through`, if given)."""
    names = _up_to(entry_names(root), through)
    base = Path(root) / TRASH
    return TrashSummary(len(names), sum(folder_size(base / name)[0] for name in names), names[0] if names else None)


def _up_to(names: list[str], through: str | None) -> list[str]:
    if through is None:
        return names
    if not ENTRY_NAME.fullmatch(through):
        return []
    return [name for name in names if _order(name) <= _order(through)]


def empty_trash(root: Path, through: str | None, *,
                on_progress: Callable[[int, int], None] | None = None) -> tuple[int, int, list[tuple[str, str]]]:
    """Delete for good every entry up to and including `through` (None: all), oldest first.

    Returns (entries deleted, bytes freed, [(entry name, why it could not be deleted)]).
    `on_progress(done, total)` is called after each entry. Raises PathRefused when the trash
    folder is a link or no folder.
    """
    names = list(reversed(_up_to(entry_names(root), through)))
    base = _base(root)
    done = freed = 0
    failed: list[tuple[str, str]] = []
    for n, name in enumerate(names, 1):
        folder = base / name
        size = folder_size(folder)[0]
        try:
            if folder.is_symlink() or not folder.is_dir():  # swapped for a link since it was listed
                raise OSError("it is not a folder any more")
            # rmtree never follows links inside (and on Linux works on open folders, so a folder
            # swapped for a link mid-walk is not followed either).
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass  # restored or emptied meanwhile (another tab)
        except OSError as exc:
            failed.append((name, exc.strerror or str(exc)))
            continue
        else:
            done += 1
            freed += size
        if on_progress is not None:
            on_progress(n, len(names))
    return done, freed, failed


def restore(root: Path, name: str) -> TrashEntry:
    """Put a trash entry's files back where they were and remove the entry.

    Raises KeyError for an unknown entry, FileExistsError when a file of that name is back in the
    dataset (nothing is overwritten), PathRefused for a tampered entry.
    """
    root = Path(root)
    entry = read_entry(root, name)
    folder = root / TRASH / name
    moves = [(folder / "files" / relpath, resolve_within([root], relpath)) for relpath in (entry.image, *entry.captions)]
    for source, target in moves:
        if not Path(os.path.realpath(source)).is_relative_to(os.path.realpath(folder)):
            raise PathRefused(f"Trash entry {name} points outside itself")
        if Path(os.path.realpath(target)).is_relative_to(os.path.realpath(root / TRASH)):
            raise PathRefused(f"Trash entry {name} would restore into the trash")
    for _, target in moves:
        if target.exists():
            raise FileExistsError(f"{target.relative_to(root).as_posix()} exists already; rename it first")
    _move_all(moves)
    shutil.rmtree(folder)
    return entry
