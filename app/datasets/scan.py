"""Scanning a dataset folder: which images exist, their captions, sizes and fingerprints.

Rescans are incremental: an image whose size and mtime match what the index already knows is
not opened or hashed again, so rescanning 10,000 unchanged images costs one directory walk plus
reading the caption files. Every caption is read and compared by content version, so a rescan
repairs any difference between the files and the index, whatever the files' clocks say.
A corrupt or oversized image becomes a record with `error` set, never an exception, and an
oversized one is never decoded (Pillow reads the header only).

Confinement: every file the scan opens, captions included, must really lie inside the root
(a symlink leading out is skipped with a reason and never read); captions over
`MAX_CAPTION_BYTES` are skipped with a reason. Messages name files relative to the root,
never by their absolute server path.
"""
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from app.datasets.captions import (CaptionOutside, CaptionTooLarge, caption_name_for, caption_version,
                                   decode_caption, read_caption_bytes)
from app.datasets.imagehash import content_hash, perceptual_hash

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")

# Names no user put there on purpose (casefolded); dot-files, such as macOS "._x.png" resource
# forks and the app's own hidden folders, are skipped as well.
_JUNK_NAMES = {"__macosx", "thumbs.db", "desktop.ini"}


class ScanError(Exception):
    """The dataset folder itself is unusable (missing, not a folder, unreadable)."""


@dataclass(frozen=True)
class ImageRecord:
    relpath: str  # posix, relative to the root
    size: int
    mtime_ns: int
    width: int | None
    height: int | None
    format: str | None  # Pillow's name: "PNG", "JPEG", ...
    content_hash: str | None  # sha256 hex
    phash: int | None  # signed 64-bit, see imagehash
    caption_relpath: str | None
    caption_text: str | None
    caption_warning: str | None
    error: str | None
    caption_version: str | None  # captions.caption_version of the file; None: none or unreadable


@dataclass(frozen=True)
class CaptionRecord:
    """The caption of an image whose pixels did not change."""

    image_relpath: str
    caption_relpath: str | None
    caption_text: str | None
    caption_warning: str | None
    caption_version: str | None


@dataclass
class ScanResult:
    added: list[ImageRecord] = field(default_factory=list)
    changed: list[ImageRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Captions of unchanged images that differ from what `known` says (or all of them when
    # `known` carries no caption version).
    captions_changed: list[CaptionRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)


@dataclass
class _Found:
    relpath: str
    path: Path
    size: int
    mtime_ns: int
    caption: Path | None
    caption_relpath: str | None
    caption_note: str | None  # e.g. the caption is shared with a sibling image
    real_root: Path


def relative_message(message: str, root: Path) -> str:
    """`message` with the root's absolute path (as given or real) taken out, so a file is named
    relative to the dataset: "cannot identify image file '/srv/data/me/x.png'" -> "… 'x.png'"."""
    for prefix in {os.fspath(root), os.path.realpath(root)}:
        message = message.replace(prefix.rstrip(os.sep) + os.sep, "").replace(prefix, ".")
    return message


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.casefold() in _JUNK_NAMES


def _walk(root: Path, result: ScanResult, unreadable: list[str]) -> list[_Found]:
    found: list[_Found] = []
    real_root = Path(os.path.realpath(root))
    pending = [(root, PurePosixPath())]
    while pending:
        directory, rel_dir = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            if directory == root:
                raise ScanError(f"Cannot read the dataset folder: {exc.strerror or exc}") from exc
            result.skipped.append((rel_dir.as_posix(), f"Cannot read folder: {exc.strerror or exc}"))
            unreadable.append(rel_dir.as_posix())
            continue
        names: dict[str, str] = {}  # regular files inside the root: what a caption may be
        images: list[tuple[os.DirEntry, os.stat_result]] = []
        for entry in entries:
            if _is_junk(entry.name):
                continue
            rel = (rel_dir / entry.name).as_posix()
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not Path(target).is_relative_to(real_root):
                        result.skipped.append((rel, "Symlink points outside the dataset folder"))
                        continue
                    if entry.is_dir():
                        # Its target is a folder under the root, scanned under its real name;
                        # following it would list images twice or loop.
                        continue
                info = entry.stat()  # follows in-root file symlinks
            except OSError as exc:
                result.skipped.append((rel, f"Cannot read: {exc.strerror or exc}"))
                unreadable.append(rel)
                continue
            if stat.S_ISDIR(info.st_mode):
                pending.append((Path(entry.path), rel_dir / entry.name))
            elif stat.S_ISREG(info.st_mode):
                names[entry.name.casefold()] = entry.name
                if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTS:
                    images.append((entry, info))

        # Pair captions; a.png and a.jpg both claim a.txt, and the user should know.
        claims: dict[str, list[str]] = {}
        for entry, _ in images:
            caption_name = caption_name_for(entry.name, names)
            if caption_name is not None:
                claims.setdefault(caption_name, []).append(entry.name)
        for entry, info in images:
            caption_name = caption_name_for(entry.name, names)
            note = None
            if caption_name is not None and len(claims[caption_name]) > 1:
                others = ", ".join(n for n in claims[caption_name] if n != entry.name)
                note = f"{caption_name} is also the caption of {others}; editing one edits both"
            found.append(_Found(
                relpath=(rel_dir / entry.name).as_posix(),
                path=Path(entry.path),
                size=info.st_size,
                mtime_ns=info.st_mtime_ns,
                caption=Path(directory) / caption_name if caption_name else None,
                caption_relpath=(rel_dir / caption_name).as_posix() if caption_name else None,
                caption_note=note,
                real_root=real_root,
            ))
    return found


def _read_caption_of(item: _Found) -> tuple[str | None, str | None, str | None, str | None]:
    """(text, warning, version, skip reason) of an image's caption; problems become the warning.

    The skip reason is set when the file exists but is not used (too large, outside the root).
    """
    if item.caption is None:
        return None, None, None, None
    try:
        data = read_caption_bytes(item.caption, within=item.real_root)
    except (CaptionTooLarge, CaptionOutside) as exc:
        return None, str(exc), None, str(exc)
    except OSError as exc:
        return None, f"Cannot read caption: {exc.strerror or exc}", None, None
    caption = decode_caption(data)
    warnings = [w for w in (caption.warning, item.caption_note) if w]
    return caption.text, "; ".join(warnings) or None, caption_version(data), None


def _inspect(item: _Found, max_pixels: int) -> tuple[ImageRecord, str | None]:
    """The image's record, and why its caption file is not used (or None)."""
    width = height = fmt = phash = digest = None
    error = None
    try:
        digest = content_hash(item.path)
        with Image.open(item.path) as image:
            width, height = image.size
            fmt = image.format
            if width * height > max_pixels:
                error = f"Image too large to process: {width}×{height} pixels (limit {max_pixels:,})"
            else:
                phash = perceptual_hash(image)
    except Image.DecompressionBombError as exc:
        error = f"Image too large to process: {exc}"
    except Exception as exc:  # Pillow raises many types for corrupt files
        error = f"Cannot read image: {relative_message(str(exc), item.real_root)}"
    text, warning, version, unused = _read_caption_of(item)
    return ImageRecord(
        relpath=item.relpath, size=item.size, mtime_ns=item.mtime_ns, width=width, height=height,
        format=fmt, content_hash=digest, phash=phash, caption_relpath=item.caption_relpath,
        caption_text=text, caption_warning=warning, error=error, caption_version=version,
    ), unused


def scan_folder(
    root: Path,
    *,
    known: Mapping[str, Sequence[int | None]],
    max_pixels: int | None = None,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Compare the images under `root` with `known` and inspect what is new or changed.

    `known` maps image relpath -> (size, mtime_ns) or (size, mtime_ns, caption_version | None).
    Every caption is read; with the third value, captions of unchanged images are reported only
    when their content differs from it, without it all are reported in `captions_changed`.
    Captions not used (too large, leading outside the root) are also listed in `skipped`.
    `max_pixels` defaults to Pillow's MAX_IMAGE_PIXELS. `workers` > 1 decodes and hashes in
    threads (Pillow and hashlib release the GIL). `on_progress(done, total)` counts inspected
    images. Raises `ScanError` if `root` is not a readable folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ScanError("The dataset folder is missing or is not a folder")
    limit = max_pixels or Image.MAX_IMAGE_PIXELS or 2**62
    result = ScanResult()
    unreadable: list[str] = []
    found = _walk(root, result, unreadable)

    to_inspect: list[tuple[_Found, bool]] = []
    unused: dict[str, str] = {}  # caption relpath -> why it is not used (once per file)
    for item in found:
        previous = known.get(item.relpath)
        if previous is None:
            to_inspect.append((item, True))
        elif (previous[0], previous[1]) != (item.size, item.mtime_ns):
            to_inspect.append((item, False))
        else:
            result.unchanged.append(item.relpath)
            text, warning, version, reason = _read_caption_of(item)
            if reason:
                unused[item.caption_relpath] = reason
            if len(previous) > 2 and version == previous[2] and (version is not None or item.caption is None):
                continue
            result.captions_changed.append(
                CaptionRecord(item.relpath, item.caption_relpath, text, warning, version)
            )

    present = {item.relpath for item in found}
    for relpath in known:
        if relpath in present:
            continue
        # Files we could not look at are not "removed": a permission glitch must not drop them.
        if any(relpath == u or relpath.startswith(u + "/") for u in unreadable):
            result.unchanged.append(relpath)
        else:
            result.removed.append(relpath)

    total = len(to_inspect)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = pool.map(lambda pair: _inspect(pair[0], limit), to_inspect)
        for done, ((record, reason), (_, is_new)) in enumerate(zip(records, to_inspect), start=1):
            (result.added if is_new else result.changed).append(record)
            if reason:
                unused[record.caption_relpath] = reason
            if on_progress is not None:
                on_progress(done, total)
    result.skipped += sorted(unused.items())
    return result
