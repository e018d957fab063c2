"""Importing a dataset from an uploaded zip, safely.

Refused outright (nothing is left on disk): entry names that would escape the destination
(absolute, `..`, drive letters — backslashes count as separators, as Windows tools write them),
more entries or more declared bytes than the limits or the user's quota, an entry or archive
that claims to expand far more than real images do (`MAX_ENTRY_RATIO`, `MAX_ARCHIVE_RATIO`: a
zip bomb is refused from its directory, before anything is inflated), data that decompresses
past its declared size or the total limit (sizes are counted while streaming, not trusted), and
corrupt data. Skipped with a reason: symlinks, encrypted entries, unsupported file types,
"images" whose first bytes are no image format's, oversized files and captions (over
`MAX_CAPTION_BYTES`), duplicate names. Ignored silently (only counted): OS junk such as `__MACOSX/`, `._*`,
`.DS_Store`, `Thumbs.db`, and other hidden names, which the folder scan would skip anyway.

Extraction goes to a hidden sibling folder that is renamed into place at the end, so a refused
or failed import leaves nothing behind and a successful one appears all at once.
"""
import os
import re
import shutil
import struct
import time
import uuid
import zipfile
from zlib import error as zlib_error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from app.datasets.captions import CAPTION_EXTS, MAX_CAPTION_BYTES
from app.datasets.scan import IMAGE_EXTS

METADATA_EXTS = (".json",)  # kohya's metadata file (captions/tags keyed by image)
GiB = 1 << 30
MiB = 1 << 20
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_JUNK_NAMES = {"thumbs.db", "desktop.ini"}

# Images are stored compressed already: a PNG or JPEG deflates by a few percent, a flat BMP by
# tens of times. 100× for one entry and 20× for the whole archive leave real datasets far
# inside while a bomb (zeros deflate ~1000×) is refused; entries and archives too small to
# matter are exempt, since short captions can compress well.
MAX_ENTRY_RATIO = 100
MAX_ARCHIVE_RATIO = 20
RATIO_FLOOR_ENTRY = 1 * (1 << 20)
RATIO_FLOOR_ARCHIVE = 64 * (1 << 20)

# The first bytes of every image format the scan reads (IMAGE_EXTS).
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


class ZipRefused(Exception):
    """The zip as a whole was not imported; `message` is fit to show the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ExtractResult:
    images: list[str] = field(default_factory=list)  # posix paths relative to dest_dir
    captions: list[str] = field(default_factory=list)
    metadata_files: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name in zip, reason)
    ignored_junk: int = 0


def size_text(size: int) -> str:
    if size >= GiB:
        return f"{size / GiB:.1f} GiB"
    if size >= MiB:
        return f"{size / MiB:.0f} MiB"
    return f"{size:,} bytes"


def _declared_entries(zip_path_or_file: str | Path | BinaryIO) -> int | None:
    """How many entries the zip's end-of-central-directory record declares (zip64 too), or None.

    Read before `zipfile` parses the central directory, which it holds in memory whole: a 2 GB
    upload of empty entries would otherwise be tens of millions of objects before any limit.
    """
    fh = open(zip_path_or_file, "rb") if isinstance(zip_path_or_file, (str, Path)) else zip_path_or_file
    try:
        start = fh.tell()
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        tail_start = max(0, size - (1 << 16) - 22)  # the record ends the file, after a comment of <= 64 KiB
        fh.seek(tail_start)
        tail = fh.read()
        fh.seek(start)
    finally:
        if fh is not zip_path_or_file:
            fh.close()
    at = tail.rfind(b"PK\x05\x06")
    if at == -1 or at + 22 > len(tail):
        return None
    entries = struct.unpack_from("<H", tail, at + 10)[0]
    if entries == 0xFFFF:  # zip64: the count is in the zip64 record the locator points at
        locator = tail.rfind(b"PK\x06\x07", 0, at)
        if locator == -1:
            return None
        record = struct.unpack_from("<Q", tail, locator + 8)[0] - tail_start
        if record < 0 or tail[record:record + 4] != b"PK\x06\x06":
            return None
        entries = struct.unpack_from("<Q", tail, record + 32)[0]
    return entries


def _open_archive(zip_path_or_file: str | Path | BinaryIO, max_files: int) -> zipfile.ZipFile:
    """`zipfile.ZipFile`, after refusing a directory that declares more than `max_files` entries."""
    try:
        declared = _declared_entries(zip_path_or_file)
    except OSError as exc:
        raise ZipRefused(f"Not a readable zip file: {exc}") from exc
    if declared is not None and declared > max_files:
        raise ZipRefused(f"Zip has {declared:,} entries; the limit is {max_files:,}")
    try:
        return zipfile.ZipFile(zip_path_or_file)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ZipRefused(f"Not a readable zip file: {exc}") from exc


def _safe_parts(name: str) -> list[str]:
    """The path components of an entry name; raises ZipRefused if it could escape."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        raise ZipRefused(f"Zip contains an absolute path: {name!r}")
    parts = [p for p in normalised.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ZipRefused(f"Zip contains a path that leaves its folder: {name!r}")
    if any("\x00" in p for p in parts):
        raise ZipRefused(f"Zip contains an invalid file name: {name!r}")
    return parts


def _is_junk(parts: list[str]) -> bool:
    # Hidden names (._x.png resource forks, .DS_Store, .git/) are junk, as the folder scan sees it.
    return any(p == "__MACOSX" or p.startswith(".") for p in parts) or parts[-1].casefold() in _JUNK_NAMES


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    # Unix zips keep st_mode in the high 16 bits of external_attr.
    return info.create_system == 3 and (info.external_attr >> 16) & 0o170000 == 0o120000


def _zip_mtime(info: zipfile.ZipInfo) -> float | None:
    try:
        return time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


def extract_dataset_zip(
    zip_path_or_file: str | Path | BinaryIO,
    dest_dir: Path,
    *,
    max_files: int = 20000,
    max_total_bytes: int = 10 * GiB,
    max_file_bytes: int = 200 * MiB,
    quota_left: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExtractResult:
    """Extract the images, captions and kohya metadata of a zip into `dest_dir`.

    `dest_dir` must not exist or be an empty folder. Sub-folders in the zip are kept (kohya's
    `img/10_name class/` layout stays intact). `quota_left` is what the user's storage quota
    still allows, in bytes (None: no quota). Raises `ZipRefused`; on any failure `dest_dir`
    is left as it was. `on_progress(done, total)` counts entries.
    """
    dest_dir = Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise ZipRefused(f"Destination already exists and is not empty: {dest_dir}")
    archive = _open_archive(zip_path_or_file, max_files)

    with archive:
        plan, result = _plan(archive, max_files, max_total_bytes, max_file_bytes, quota_left)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = dest_dir.parent / f".{dest_dir.name}.import-{uuid.uuid4().hex[:12]}"
        os.mkdir(staging, 0o777)  # mkdir honours the umask, unlike mkdtemp's 0o700
        try:
            total_written = 0
            for done, (info, parts, kind) in enumerate(plan, start=1):
                target = staging.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                total_written += _copy_entry(archive, info, target, max_total_bytes - total_written)
                mtime = _zip_mtime(info)
                if mtime is not None:
                    os.utime(target, (mtime, mtime))
                getattr(result, kind).append("/".join(parts))
                if on_progress is not None:
                    on_progress(done, len(plan))
            if dest_dir.exists():
                dest_dir.rmdir()
            os.rename(staging, dest_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return result


def _ratio_text(info: zipfile.ZipInfo) -> str:
    return f"{size_text(info.file_size)} from {size_text(info.compress_size)}"


def _looks_like_image(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether the entry starts like an image (reads and inflates a few bytes only)."""
    try:
        with archive.open(info) as entry:
            head = entry.read(16)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError, zlib_error) as exc:
        raise ZipRefused(f"Corrupt zip data in {info.filename!r}: {exc}") from exc
    return head.startswith(_IMAGE_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def check_dataset_zip(
    zip_path_or_file: str | Path | BinaryIO,
    *,
    max_files: int = 20000,
    max_total_bytes: int = 10 * GiB,
    max_file_bytes: int = 200 * MiB,
    quota_left: int | None = None,
) -> ExtractResult:
    """Every check `extract_dataset_zip` makes before writing, without writing anything.

    Reads the zip's directory and the first bytes of each image, so a request can refuse a bomb
    or a fake at once and leave the unpacking to a job. Returns what would be extracted (the
    names in `images`, `captions`, `metadata_files`) and skipped; raises `ZipRefused`.
    """
    archive = _open_archive(zip_path_or_file, max_files)
    with archive:
        plan, result = _plan(archive, max_files, max_total_bytes, max_file_bytes, quota_left)
    for _, parts, kind in plan:
        getattr(result, kind).append("/".join(parts))
    return result


def _plan(
    archive: zipfile.ZipFile, max_files: int, max_total_bytes: int, max_file_bytes: int, quota_left: int | None,
) -> tuple[list[tuple[zipfile.ZipInfo, list[str], str]], ExtractResult]:
    """Decide per entry, before writing anything: refuse, skip, ignore or extract (and as what).

    Everything that can refuse the whole zip from its directory alone (names, counts, sizes,
    ratios, quota) is checked before a single entry is inflated.
    """
    infos = archive.infolist()
    if len(infos) > max_files:
        raise ZipRefused(f"Zip has {len(infos):,} entries; the limit is {max_files:,}")
    result = ExtractResult()
    plan = []
    declared_total = compressed_total = 0
    taken: set[str] = set()
    for info in infos:
        parts = _safe_parts(info.filename)
        if not parts or info.is_dir():
            continue
        if _is_junk(parts):
            result.ignored_junk += 1
            continue
        name = info.filename
        ext = os.path.splitext(parts[-1])[1].lower()
        if _is_symlink(info):
            result.skipped.append((name, "symbolic link"))
        elif info.flag_bits & 0x1:
            result.skipped.append((name, "encrypted"))
        elif ext not in IMAGE_EXTS + CAPTION_EXTS + METADATA_EXTS:
            result.skipped.append((name, f"unsupported file type {ext or '(none)'}"))
        elif info.file_size > RATIO_FLOOR_ENTRY and info.file_size > MAX_ENTRY_RATIO * max(info.compress_size, 1):
            raise ZipRefused(f"{name!r} would expand to {_ratio_text(info)}, more than {MAX_ENTRY_RATIO}× — "
                             "no image compresses like that (a zip bomb?)")
        elif info.file_size > max_file_bytes:
            result.skipped.append((name, f"larger than the {size_text(max_file_bytes)} limit per file"))
        elif ext in CAPTION_EXTS and info.file_size > MAX_CAPTION_BYTES:
            result.skipped.append((name, f"caption larger than the {MAX_CAPTION_BYTES // 1024} KiB limit per caption"))
        elif "/".join(parts).casefold() in taken:
            # Case-insensitive: on macOS and Windows A.png and a.png are the same file.
            result.skipped.append((name, "duplicate name"))
        else:
            taken.add("/".join(parts).casefold())
            declared_total += info.file_size
            compressed_total += info.compress_size
            kind = "images" if ext in IMAGE_EXTS else "captions" if ext in CAPTION_EXTS else "metadata_files"
            plan.append((info, parts, kind))
    if declared_total > max_total_bytes:
        raise ZipRefused(
            f"Zip would unpack to {size_text(declared_total)}; the limit is {size_text(max_total_bytes)}"
        )
    if declared_total > RATIO_FLOOR_ARCHIVE and declared_total > MAX_ARCHIVE_RATIO * max(compressed_total, 1):
        raise ZipRefused(f"Zip would expand to {size_text(declared_total)} from {size_text(compressed_total)}, "
                         f"more than {MAX_ARCHIVE_RATIO}× — image datasets do not compress like that (a zip bomb?)")
    if quota_left is not None and declared_total > quota_left:
        raise ZipRefused(f"Zip would unpack to {size_text(declared_total)}, but your storage quota has only "
                         f"{size_text(max(quota_left, 0))} left; delete an uploaded dataset or ask for a larger quota")
    checked = []
    for info, parts, kind in plan:
        if kind == "images" and not _looks_like_image(archive, info):
            result.skipped.append((info.filename, "not an image: its contents are not PNG, JPEG, WebP, GIF or BMP"))
            continue
        checked.append((info, parts, kind))
    if not any(kind == "images" for _, _, kind in checked):
        raise ZipRefused("Zip contains no images (png, jpg, jpeg, webp, gif, bmp)")
    return checked, result


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one entry to `target`, counting real bytes; returns how many were written.

    zipfile itself stops at the declared size (a lying entry then fails its CRC); the counter
    keeps the limits true without relying on that.
    """
    limit = min(info.file_size, budget)
    written = 0
    try:
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise ZipRefused(
                        f"{info.filename!r} unpacks to more than its declared size or the total limit (zip bomb?)"
                    )
                dst.write(chunk)
    except zipfile.BadZipFile as exc:
        raise ZipRefused(f"Corrupt zip data in {info.filename!r}: {exc}") from exc
    except NotImplementedError as exc:
        raise ZipRefused(f"Unsupported compression in {info.filename!r}: {exc}") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ZipRefused(f"Cannot extract {info.filename!r}: {exc}") from exc
    return written
