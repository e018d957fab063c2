"""A trash folder inside the dataset: deleting an image moves it there, and it can be put back.

Each deletion is one folder `<root>/.tessera-trash/<stamp>-<n>/` holding the image (and its caption
when no other image shares it) under their dataset-relative paths, plus `entry.json` saying what
goes back where. The folder is hidden, so scans skip it, and it stays on the dataset's own disk, so
moving in and out is a rename and never a copy. Nothing is ever deleted for good here: emptying the
trash is the user's to do in their file manager.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from app.datasets.paths import PathRefused, resolve_within

TRASH = ".tessera-trash"


@dataclass(frozen=True)
class TrashEntry:
    name: str  # the entry's folder name, what `restore` takes
    image: str  # dataset-relative path the image came from
    caption: str | None  # its caption's relative path, if that went to the trash too
    deleted_at: str  # ISO 8601, UTC


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"{target.name} exists already")
    os.rename(source, target)


def move_to_trash(root: Path, image_relpath: str, caption_relpath: str | None) -> TrashEntry:
    """Move an image (and `caption_relpath`, if given) into a new trash entry.

    Pass no caption when other images share it. Raises PathRefused for a path outside the
    dataset, FileNotFoundError if the image is gone, OSError for other file errors; on an error
    nothing stays half-moved.
    """
    root = Path(root)
    image = resolve_within([root], image_relpath)
    caption = resolve_within([root], caption_relpath) if caption_relpath else None
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
                       stamp.isoformat(timespec="seconds"))
    (folder / "entry.json").write_text(json.dumps(entry.__dict__), encoding="utf-8")
    _move(image, folder / "files" / image_relpath)
    if entry.caption:
        try:
            _move(caption, folder / "files" / entry.caption)
        except OSError:
            _move(folder / "files" / image_relpath, image)  # put the image back: all or nothing
            raise
    return entry


def list_trash(root: Path) -> list[TrashEntry]:
    """The trash entries of a dataset, newest first (unreadable entries are skipped)."""
    base = Path(root) / TRASH
    if not base.is_dir():
        return []
    entries = []
    for folder in sorted(base.iterdir(), reverse=True):
        try:
            data = json.loads((folder / "entry.json").read_text(encoding="utf-8"))
            entries.append(TrashEntry(folder.name, data["image"], data.get("caption"), data.get("deleted_at", "")))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return entries


def restore(root: Path, name: str) -> TrashEntry:
    """Put a trash entry's files back where they were and remove the entry.

    Raises KeyError for an unknown entry, FileExistsError when a file of that name is back in the
    dataset (nothing is overwritten), PathRefused for a tampered entry.
    """
    root = Path(root)
    entry = next((e for e in list_trash(root) if e.name == name), None)
    if entry is None or "/" in name or name.startswith("."):
        raise KeyError(name)
    folder = root / TRASH / name
    moves = [(folder / "files" / entry.image, resolve_within([root], entry.image))]
    if entry.caption:
        moves.append((folder / "files" / entry.caption, resolve_within([root], entry.caption)))
    for _, target in moves:
        if target.exists():
            raise FileExistsError(f"{target.relative_to(root).as_posix()} exists already; rename it first")
    for source, target in moves:
        if not Path(os.path.realpath(source)).is_relative_to(os.path.realpath(folder)):
            raise PathRefused(f"Trash entry {name} points outside itself")
    done = []
    try:
        for source, target in moves:
            _move(source, target)
            done.append((source, target))
    except OSError:
        for source, target in done:
            os.rename(target, source)
        raise
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    folder.rmdir()
    return entry
