"""Scanning a dataset folder: which images exist, their captions, sizes and fingerprints.

Rescans are incremental: an image whose size and mtime match what the index already knows is
not opened or hashed again, and a caption whose size and mtime match what the index stored when it
last read it is not read again (another program's edit changes them), so rescanning 100,000
unchanged images costs one directory walk. Without stored stats (the Rescan button, or a row from
before they were kept) every caption is read and compared by content version, so a full rescan
repairs any difference between the files and the index, whatever the files' clocks say.
A corrupt or oversized image becomes a record with `error` set, never an exception, and an
oversized one is never decoded (Pillow reads the header only).

Confinement: every file the scan opens, captions included, must really lie inside the root
(a symlink leading out is skipped with a reason and never read); captions over
`MAX_CAPTION_BYTES` are skipped with a reason. Messages name files relative to the root,
never by their absolute server path.
"""
import dataclasses
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from app import imaging
from app.datasets.captions import (CAPTION_EXTS, CaptionOutside, CaptionTooLarge, caption_name_for, caption_version,
                                   dataset_encoding, decode_caption, read_caption_bytes)
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
    caption_version: str | None  # captions.caption_version of the file; None: none or not used
    orientation: int = 1  # EXIF 1-8; width and height above are already upright
    alpha: float = 0.0  # share of pixels that are not fully opaque (0: none)
    caption_problems: tuple[str, ...] = ()  # captions.CAPTION_PROBLEMS keys
    pairing_note: str | None = None  # how the caption was paired, when it is not plain
    caption_stat: tuple[int, int] | None = None  # (size, mtime_ns) of the caption file read


@dataclass(frozen=True)
class CaptionRecord:
    """The caption of an image whose pixels did not change."""

    image_relpath: str
    caption_relpath: str | None
    caption_text: str | None
    caption_warning: str | None
    caption_version: str | None
    caption_problems: tuple[str, ...] = ()
    pairing_note: str | None = None
    caption_stat: tuple[int, int] | None = None


@dataclass
class ScanResult:
    added: list[ImageRecord] = field(default_factory=list)
    changed: list[ImageRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Captions of unchanged images that differ from what `known` says (or all of them when
    # `known` carries no caption version).
    captions_changed: list[CaptionRecord] = field(default_factory=list)
    # Captions read again whose content is what the index holds, but whose (size, mtime_ns) is
    # new to it: image relpath -> the stat to store, so the next scan need not read them.
    caption_stats: dict[str, tuple[int, int] | None] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    # The encoding the dataset's non-UTF-8 captions share, when the detector is sure of it
    # (keep it for the next scan: one new short caption alone may not settle it).
    caption_encoding: str | None = None


@dataclass
class _Found:
    relpath: str
    path: Path
    size: int
    mtime_ns: int
    caption: Path | None
    caption_relpath: str | None
    caption_note: str | None  # how it was paired: shared with a sibling, a second caption file, by case
    real_root: Path
    caption_stat: tuple[int, int] | None = None  # (size, mtime_ns) of the caption file as listed


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
        names: dict[str, str] = {}  # regular files really inside the root: what a caption may be
        stats: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) of those files
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
                stats[entry.name] = (info.st_size, info.st_mtime_ns)
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
            found.append(_Found(
                relpath=(rel_dir / entry.name).as_posix(),
                path=Path(entry.path),
                size=info.st_size,
                mtime_ns=info.st_mtime_ns,
                caption=Path(directory) / caption_name if caption_name else None,
                caption_relpath=(rel_dir / caption_name).as_posix() if caption_name else None,
                caption_note=pairing_note(entry.name, caption_name, claims.get(caption_name, []), names),
                real_root=real_root,
                caption_stat=stats.get(caption_name) if caption_name else None,
            ))
    return found


def pairing_note(image_name: str, caption_name: str | None, claimants: Sequence[str],
                 names_by_casefold: Mapping[str, str]) -> str | None:
    """Why the pairing of an image with its caption needs a look, or None when it is plain.

    - several images claim one caption (`a.png`, `a.jpg` -> `a.txt`): editing one edits all;
    - more than one caption file fits (`a.txt` and `a.caption`): which one Tessera uses;
    - the names match only by letter case (`A.png` / `a.txt`, `a.TXT`): trainers on Linux look
      for the exact name (kohya: stem + `--caption_extension`) and will not find it.
    """
    if caption_name is None:
        return None
    notes = []
    others = [n for n in claimants if n != image_name]
    if others:
        notes.append(f"{caption_name} is also the caption of {', '.join(others)}; editing one edits all")
    stem = os.path.splitext(image_name)[0]
    unused = [names_by_casefold[(stem + ext).casefold()] for ext in CAPTION_EXTS
              if (stem + ext).casefold() in names_by_casefold and names_by_casefold[(stem + ext).casefold()] != caption_name]
    if unused:
        notes.append(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} also there; Tessera and trainers use {caption_name}")
    caption_stem, caption_ext = os.path.splitext(caption_name)
    if caption_stem != stem or caption_ext != caption_ext.lower():
        notes.append(f"{caption_name} matches {image_name} only by letter case; trainers on Linux will not pair them")
    return "; ".join(notes) or None


@dataclass(frozen=True)
class _CaptionRead:
    text: str | None = None
    warning: str | None = None
    version: str | None = None
    problems: tuple[str, ...] = ()
    raw: bytes | None = None  # kept for non-UTF-8 captions, to detect the dataset's encoding
    unused: str | None = None  # why a caption file that exists is not read (too large, outside)


def _read_caption_of(item: _Found, hint: str | None = None, data: bytes | None = None) -> _CaptionRead:
    """An image's caption, decoded; problems reading it become the warning."""
    if item.caption is None:
        return _CaptionRead()
    if data is None:
        try:
            data = read_caption_bytes(item.caption, within=item.real_root)
        except (CaptionTooLarge, CaptionOutside) as exc:
            return _CaptionRead(warning=str(exc), unused=str(exc))
        except OSError as exc:
            return _CaptionRead(warning=f"Cannot read caption: {exc.strerror or exc}")
    caption = decode_caption(data, hint)
    return _CaptionRead(caption.text, caption.warning, caption_version(data), caption.problems,
                        data if caption.encoding != "utf-8" else None)


def _inspect(item: _Found, max_pixels: int, hint: str | None) -> tuple[ImageRecord, _CaptionRead]:
    width = height = fmt = phash = digest = None
    error = None
    turn, alpha = 1, 0.0
    try:
        digest = content_hash(item.path)
        with Image.open(item.path) as image:
            width, height = imaging.upright_size(image)
            turn = imaging.orientation(image)
            fmt = image.format
            if width * height > max_pixels:
                error = f"Image too large to process: {width}×{height} pixels (limit {max_pixels:,})"
            else:
                alpha = imaging.alpha_coverage(image)
                phash = perceptual_hash(image)
    except Image.DecompressionBombError as exc:
        error = f"Image {imaging.open_problem(exc)}"
    except Exception as exc:  # Pillow raises many types for corrupt files
        error = f"Cannot read image: {relative_message(str(exc), item.real_root)}"
    caption = _read_caption_of(item, hint)
    return ImageRecord(
        relpath=item.relpath, size=item.size, mtime_ns=item.mtime_ns, width=width, height=height,
        format=fmt, content_hash=digest, phash=phash, caption_relpath=item.caption_relpath,
        caption_text=caption.text, caption_warning=caption.warning, error=error, caption_version=caption.version,
        orientation=turn, alpha=alpha, caption_problems=caption.problems, pairing_note=item.caption_note,
        caption_stat=item.caption_stat if caption.version is not None else None,
    ), caption


def scan_folder(
    root: Path,
    *,
    known: Mapping[str, Sequence[int | None]],
    max_pixels: int | None = None,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    caption_encoding: str | None = None,
) -> ScanResult:
    """Compare the images under `root` with `known` and inspect what is new or changed.

    `known` maps image relpath -> (size, mtime_ns), or (size, mtime_ns, caption_version | None),
    or that plus (caption_relpath, caption size, caption mtime_ns) as `index.known_state` gives
    it. With the caption's stat, a caption still paired with the same file of the same size and
    mtime is not read again; otherwise every caption is read. With the version, captions of
    unchanged images are reported only when their content differs from it (a caption read again
    with the same content but a new stat is listed in `caption_stats`); without it all are
    reported in `captions_changed`.
    Captions not used (too large, leading outside the root) are also listed in `skipped`.
    `max_pixels` defaults to Pillow's MAX_IMAGE_PIXELS. `workers` > 1 decodes and hashes in
    threads (Pillow and hashlib release the GIL). `on_progress(done, total)` counts inspected
    images. `caption_encoding` is what an earlier scan found the dataset's non-UTF-8 captions to
    be (`ScanResult.caption_encoding`); captions whose encoding is uncertain alone are decoded
    again with the encoding of all of them read together. Raises `ScanError` if `root` is not
    a readable folder.
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
    raw_captions: dict[str, tuple[_Found, bytes | None]] = {}
    for item in found:
        previous = known.get(item.relpath)
        if previous is None:
            to_inspect.append((item, True))
        elif (previous[0], previous[1]) != (item.size, item.mtime_ns):
            to_inspect.append((item, False))
        else:
            result.unchanged.append(item.relpath)
            if (len(previous) > 5 and previous[2] is not None and item.caption_stat is not None
                    and (previous[3], previous[4], previous[5]) == (item.caption_relpath, *item.caption_stat)):
                continue  # the caption file the index read, untouched since (size and mtime as then)
            read = _read_caption_of(item, caption_encoding)
            if read.unused:
                unused[item.caption_relpath] = read.unused
            stat_now = item.caption_stat if read.version is not None else None
            if len(previous) > 2 and read.version == previous[2] and (read.version is not None or item.caption is None):
                if len(previous) > 5 and (previous[4], previous[5]) != (stat_now or (None, None)):
                    result.caption_stats[item.relpath] = stat_now
                continue
            raw_captions[item.relpath] = (item, read.raw)
            result.captions_changed.append(CaptionRecord(item.relpath, item.caption_relpath, read.text, read.warning,
                                                         read.version, read.problems, item.caption_note, stat_now))

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
        records = pool.map(lambda pair: _inspect(pair[0], limit, caption_encoding), to_inspect)
        for done, ((record, read), (item, is_new)) in enumerate(zip(records, to_inspect), start=1):
            (result.added if is_new else result.changed).append(record)
            raw_captions[item.relpath] = (item, read.raw)
            if read.unused:
                unused[item.caption_relpath] = read.unused
            if on_progress is not None:
                on_progress(done, total)
    result.skipped += sorted(unused.items())
    _settle_encodings(result, raw_captions, caption_encoding)
    return result


def _settle_encodings(result: ScanResult, raw_captions: Mapping[str, tuple[_Found, bytes | None]],
                      known_encoding: str | None) -> None:
    """Decode uncertain captions again with the encoding of all non-UTF-8 captions read together."""
    uncertain = {_image_of(r) for r in (*result.added, *result.changed, *result.captions_changed)
                 if "encoding_uncertain" in r.caption_problems}
    samples = [raw for _, raw in raw_captions.values() if raw is not None]
    found = dataset_encoding(samples) if samples else None
    result.caption_encoding = found or known_encoding
    if not uncertain or found is None or found == known_encoding:
        return

    def redo(record):
        item, raw = raw_captions[_image_of(record)]
        read = _read_caption_of(item, found, raw)
        return dataclasses.replace(record, caption_text=read.text, caption_warning=read.warning,
                                   caption_problems=read.problems)

    for records in (result.added, result.changed, result.captions_changed):
        records[:] = [redo(r) if _image_of(r) in uncertain else r for r in records]


def _image_of(record: ImageRecord | CaptionRecord) -> str:
    return record.relpath if isinstance(record, ImageRecord) else record.image_relpath
