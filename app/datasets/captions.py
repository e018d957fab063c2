"""Reading and writing caption files without ever losing or silently mangling a caption.

Reads tolerate what real datasets contain (BOM, CRLF, Shift-JIS, GBK, Windows-125x, UTF-16 from
Notepad) and say so, detecting legacy encodings with charset-normalizer; writes are UTF-8 without
BOM with `\\n` newlines, atomic (temp file + fsync + rename) and keep the file's mode and owner.
A write can carry the version the editor saw, so two tabs editing one
caption get a conflict instead of one edit vanishing.

Versions are content hashes of the bytes on disk (`caption_version`), not mtimes: a coarse clock
cannot give two different contents one version, and a rescan can tell any difference. The check
and the replace run under `folder_lock`, an OS lock on a hidden file in the caption's own folder,
so exactly one writer per version wins across threads, processes and hosts that share the folder.
Caption files are read only up to `MAX_CAPTION_BYTES`.
"""
import fcntl
import hashlib
import os
import shutil
import stat
import threading
import unicodedata
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer

from app.atomic import fsync_directory

CAPTION_EXTS = (".txt", ".caption", ".cap")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Captions are a line of tags or a paragraph: CLIP reads 77 tokens, FLUX's T5 512 (a few KB), and
# the longest real captions (VLM descriptions) are 2–4 KB. 64 KiB is over ten times that, yet keeps
# a page of 60 captions, an editor's chips and every read bounded; a bigger "caption" is a mistake
# (or an attack) and is refused at import, skipped with a reason at scan and never written.
MAX_CAPTION_BYTES = 64 * 1024

# The hidden file whose OS lock serialises caption writes within one folder (see folder_lock).
LOCK_NAME = ".tessera-captions.lock"
# fcntl locks belong to a process, so threads of one process also take one of these first.
_thread_locks = [threading.Lock() for _ in range(64)]


class CaptionWriteError(OSError):
    """A caption could not be written; `message` is fit to show the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CaptionTooLarge(CaptionWriteError):
    """A caption file (or a caption to write) is over `MAX_CAPTION_BYTES`."""

    def __init__(self, name: str, size: int, limit: int = MAX_CAPTION_BYTES) -> None:
        super().__init__(f"{name} is {size / 1024:,.0f} KiB; captions are limited to {limit // 1024:,} KiB, "
                         "so it is not read or written (split it or shorten it)")
        self.size = size


class CaptionConflict(Exception):
    """The caption changed on disk since the editor loaded it.

    Carries what is on disk now (`current_text` is None if the file was deleted or unreadable,
    `current_version` None if it does not exist) so the UI can show both and let the user choose.
    """

    def __init__(self, path: Path, current_text: str | None, current_version: str | None) -> None:
        what = "was deleted" if current_version is None else "was changed"
        super().__init__(f"{path.name} {what} on disk after it was opened; reload to see the other edit")
        self.path = path
        self.current_text = current_text
        self.current_version = current_version


def caption_version(data: bytes | None) -> str | None:
    """The version of caption bytes: 32 hex digits of BLAKE2b; None for "no file"."""
    return None if data is None else hashlib.blake2b(data, digest_size=16).hexdigest()


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


class CaptionOutside(OSError):
    """The caption file is a symlink (or inside a symlinked folder) leading out of the root."""


def read_caption_bytes(path: Path, max_bytes: int = MAX_CAPTION_BYTES, *, within: Path | None = None) -> bytes:
    """The file's bytes, refusing (`CaptionTooLarge`) anything over `max_bytes` without reading it.

    With `within` (a real, symlink-free folder), a file whose real path lies outside it raises
    `CaptionOutside` and is never opened. Only regular files are read: a FIFO or device named
    like a caption raises OSError instead of blocking the reader.
    """
    real = os.path.realpath(path)
    if within is not None and not Path(real).is_relative_to(within):
        raise CaptionOutside(f"{Path(path).name} is a link to a file outside the dataset folder; it is not read")
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(f"{Path(path).name} is not a regular file")
        if info.st_size > max_bytes:
            raise CaptionTooLarge(Path(path).name, info.st_size, max_bytes)
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read
        raise CaptionTooLarge(Path(path).name, len(data), max_bytes)
    return data


def current_version(path: Path) -> tuple[str | None, bytes | None]:
    """(version, bytes) of the caption at `path` now; (None, None) if there is no file."""
    try:
        data = read_caption_bytes(path)
    except FileNotFoundError:
        return None, None
    except CaptionTooLarge as exc:
        # A file too large to read still has a version no editor can hold: any save conflicts.
        return f"too-large-{exc.size}", None
    return caption_version(data), data


@dataclass(frozen=True)
class CaptionText:
    text: str  # newlines normalised to "\n", BOM removed, otherwise exactly as on disk
    encoding: str  # a Python codec name: "utf-8", "utf-16", "cp932", "gb18030", "cp1252", ...
    had_bom: bool
    newline: str  # the file's newline style: "\n", "\r\n" or "\r"
    warning: str | None  # set when the file was not UTF-8; saving converts it
    lines: int  # number of lines, not counting a final newline
    # False when the encoding is a guess (several readings are equally likely): bulk edits leave
    # such a file byte-identical and name it; the user confirms a reading in the editor first.
    confident: bool = True
    alternatives: tuple[str, ...] = ()  # other equally likely encodings, when not confident

    @property
    def first_line(self) -> str:
        """The caption kohya trains on: it reads only the first line (`lines[0].strip()`)."""
        return self.text.split("\n", 1)[0].strip()

    @property
    def problems(self) -> tuple[str, ...]:
        """What trainers would trip over, as `CAPTION_PROBLEMS` keys."""
        return caption_problems(self.text, had_bom=self.had_bom, encoding=self.encoding, confident=self.confident)


# What a caption file can get wrong for trainers, key -> what Health says about it.
CAPTION_PROBLEMS = {
    "bom": "Starts with a UTF-8 byte order mark (kohya reads the first tag as “\\ufeff…”)",
    "first_line_empty": "First line is empty (kohya trains on the first line only, so on nothing)",
    "multi_line": "Several lines (kohya and most trainers read only the first)",
    "not_utf8": "Not UTF-8 (kohya refuses it); converted to UTF-8 on the next save",
    "encoding_uncertain": "Encoding uncertain: bulk edits skip it until you confirm a reading",
}


def caption_problems(text: str, *, had_bom: bool = False, encoding: str = "utf-8", confident: bool = True) -> tuple[str, ...]:
    """`CAPTION_PROBLEMS` keys that apply to a decoded caption (see `CaptionText`)."""
    found = []
    if had_bom and encoding == "utf-8":
        found.append("bom")
    non_blank = [line for line in text.split("\n") if line.strip()]
    if non_blank and not text.split("\n", 1)[0].strip():
        found.append("first_line_empty")
    if len(non_blank) > 1:
        found.append("multi_line")
    if encoding not in ("utf-8", "ascii"):
        found.append("not_utf8")
    if not confident:
        found.append("encoding_uncertain")
    return tuple(found)


def find_caption(image_path: Path) -> Path | None:
    """The caption file next to `image_path`: .txt, then .caption, then .cap (also upper case)."""
    for ext in CAPTION_EXTS:
        for variant in (ext, ext.upper()):
            candidate = image_path.with_suffix(variant)
            if candidate.is_file():
                return candidate
    return None


def caption_name_for(image_name: str, names_by_casefold: dict[str, str]) -> str | None:
    """Like `find_caption`, but against a directory listing (casefolded name -> real name).

    Scanning thousands of images uses this to pair captions without a stat per candidate.
    """
    stem = os.path.splitext(image_name)[0]
    for ext in CAPTION_EXTS:
        name = names_by_casefold.get((stem + ext).casefold())
        if name is not None:
            return name
    return None


# The encodings caption files are written in besides UTF-8: the Windows ANSI code pages and the
# East Asian multi-byte ones (what Notepad, WD14 scripts and older taggers save). Limiting the
# detector to these keeps DOS, Mac and EBCDIC pages, which no caption tool writes, from tying.
DETECTABLE_ENCODINGS = (
    "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "cp874",
    "cp932", "euc_jp", "gb18030", "big5", "cp949", "koi8_r", "koi8_u",
)
# When several readings tie, the one shown (never written) is the detector's first, except:
_DISPLAY_PREFERENCE = ("cp1252",)  # Western European text ties among the Latin code pages
_NAMES = {"cp1252": "Windows-1252", "cp1250": "Windows-1250", "cp1251": "Windows-1251 (Cyrillic)",
          "cp932": "Shift-JIS", "euc_jp": "EUC-JP", "gb18030": "GBK/GB18030", "big5": "Big5",
          "cp949": "EUC-KR/CP949", "koi8_r": "KOI8-R", "koi8_u": "KOI8-U", "latin-1": "Latin-1"}


def encoding_name(encoding: str) -> str:
    """What users call a codec: "cp932" -> "Shift-JIS"."""
    return _NAMES.get(encoding, encoding.replace("cp", "Windows-", 1) if encoding.startswith("cp12") else encoding)


def _rare_char(ch: str) -> bool:
    """A character that real caption text almost never holds, so a reading full of them is wrong.

    Half-width katakana, C1 controls and private-use characters; Hangul syllables outside the
    2,350 common ones of KS X 1001 (the 8,822 others exist in CP949 only); ideographs in none of
    the national standard sets (GB2312, JIS X 0208, Big5, KS X 1001); and non-ASCII symbols,
    digits and marks that are not letters (¤ · ³ ¼, Thai digits) amid words.
    """
    code = ord(ch)
    if code < 0x80:
        return False
    if 0xFF61 <= code <= 0xFF9F or 0x80 <= code <= 0x9F or 0xE000 <= code <= 0xF8FF:
        return True
    if 0xAC00 <= code <= 0xD7A3:
        return len(ch.encode("euc_kr", errors="ignore")) != 2
    if 0x4E00 <= code <= 0x9FFF:
        return not any(_encodes(ch, codec) for codec in ("gb2312", "shift_jis", "big5", "euc_kr"))
    category = unicodedata.category(ch)
    if category[0] == "L" or category in ("Mn", "Mc", "Zs"):
        return False
    # Typographic punctuation (“ ” – — … ・ 、) is common in captions; other symbols are not.
    return category not in ("Pd", "Pi", "Pf", "Po", "Ps", "Pe")


def _encodes(ch: str, codec: str) -> bool:
    try:
        return len(ch.encode(codec)) == 2
    except UnicodeEncodeError:
        return False


def _plausible(text: str) -> bool:
    return not any(_rare_char(ch) for ch in text)


def detect_encoding(data: bytes, hint: str | None = None) -> tuple[str, str, bool, tuple[str, ...]]:
    """(encoding, text, confident, other likely encodings) of caption bytes that are not UTF-8.

    Detection is charset-normalizer's (`DETECTABLE_ENCODINGS` only). Readings it ranks as equally
    good (chaos within 0.01, coherence within 0.02 of the best plausible one: its own tie rule) are
    narrowed to the plausible ones (see `_rare_char`) that decode the most bytes as multi-byte
    characters (its tie-break).
    The result is confident when one reading is left. `hint`, the encoding detected for the
    dataset's captions together, settles a tie it is part of. Short single-byte texts (a few
    Cyrillic words) often stay uncertain: Greek and Cyrillic decode the same bytes equally well.
    """
    matches = list(charset_normalizer.from_bytes(data, cp_isolation=list(DETECTABLE_ENCODINGS)))
    if not matches:
        return "latin-1", data.decode("latin-1"), False, ()
    plausible = [m for m in matches if _plausible(str(m))]
    if plausible:
        best = plausible[0]
        plausible = [m for m in plausible
                     if abs(m.chaos - best.chaos) < 0.01 and abs(m.coherence - best.coherence) <= 0.02]
        most = max(m.multi_byte_usage for m in plausible)
        plausible = [m for m in plausible if m.multi_byte_usage == most]
    # A match stands for every encoding that decodes the bytes to the same text.
    readings: dict[str, list[str]] = {}
    for match in plausible:
        readings.setdefault(str(match), []).extend(match.could_be_from_charset or [match.encoding])
    if len(readings) == 1:
        (text, encodings), = readings.items()
        return _preferred(encodings), text, True, ()
    if hint is not None:
        for text, encodings in readings.items():
            if hint in encodings:
                return hint, text, True, ()
    if not readings:
        readings = {str(m): list(m.could_be_from_charset or [m.encoding]) for m in matches[:3]}
    texts = list(readings)
    chosen = next((t for enc in _DISPLAY_PREFERENCE for t in texts if enc in readings[t]), texts[0])
    others = tuple(dict.fromkeys(_preferred(readings[t]) for t in texts if t != chosen))
    return _preferred(readings[chosen]), chosen, False, others


def _preferred(encodings: list[str]) -> str:
    """One name for encodings that read the bytes alike: the most common caption encoding."""
    return next((enc for enc in DETECTABLE_ENCODINGS if enc in encodings), encodings[0])


def decode_caption(data: bytes, hint: str | None = None) -> CaptionText:
    """Decode caption bytes; see `read_caption`. `hint`: see `detect_encoding`."""
    had_bom = data.startswith(_UTF8_BOM)
    warning = None
    confident, alternatives = True, ()
    if had_bom:
        data = data[len(_UTF8_BOM):]
    if data.startswith(_UTF16_BOMS):
        encoding, text = "utf-16", data.decode("utf-16", errors="replace")
        had_bom = True
        warning = "UTF-16 file; saving will convert it to UTF-8"
    else:
        try:
            encoding, text = "utf-8", data.decode("utf-8")
        except UnicodeDecodeError:
            encoding, text, confident, alternatives = detect_encoding(data, hint)
            if confident:
                warning = f"not UTF-8; read as {encoding_name(encoding)} — saving will convert it to UTF-8"
            else:
                others = ", ".join(encoding_name(e) for e in alternatives) or "nothing else fits"
                warning = (f"not UTF-8 and the encoding is uncertain: shown as {encoding_name(encoding)}"
                           f" (could also be {others}); bulk edits leave it unchanged until you confirm a reading")
    if "\r\n" in text:
        newline = "\r\n"
    elif "\r" in text:
        newline = "\r"
    else:
        newline = "\n"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = len(text.split("\n")) - (1 if text.endswith("\n") else 0) if text else 0
    return CaptionText(text, encoding, had_bom, newline, warning, lines, confident, alternatives)


def decode_as(data: bytes, encoding: str) -> CaptionText:
    """Decode caption bytes with an encoding the user chose; UnicodeDecodeError if it does not fit."""
    if encoding not in ("utf-8", *DETECTABLE_ENCODINGS):
        raise LookupError(f"Not a caption encoding Tessera reads: {encoding}")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    text = data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    lines = len(text.split("\n")) - (1 if text.endswith("\n") else 0) if text else 0
    return CaptionText(text, encoding, False, "\n", None, lines, True, ())


def dataset_encoding(samples: list[bytes], limit: int = 256 * 1024) -> str | None:
    """The encoding of a dataset's non-UTF-8 captions read together, if the detector is sure.

    Captions of one dataset come from one tool, so together they are long enough for the
    detector's language statistics where one short caption is not. None if not confident.
    """
    blob, size = [], 0
    for data in samples:
        if size >= limit:
            break
        blob.append(data.removeprefix(_UTF8_BOM))
        size += len(data) + 1
    if not blob:
        return None
    encoding, _, confident, _ = detect_encoding(b"\n".join(blob))
    return encoding if confident else None


def read_caption(path: Path, hint: str | None = None) -> CaptionText:
    """Read a caption file, tolerating a BOM, CRLF and non-UTF-8 text (with a warning).

    Non-UTF-8 bytes go to `detect_encoding`; an uncertain reading has `confident=False`.
    Raises `CaptionTooLarge` for a file over `MAX_CAPTION_BYTES`, OSError if it cannot be read.
    """
    return decode_caption(read_caption_bytes(Path(path)), hint)


def read_caption_versioned(path: Path, hint: str | None = None) -> tuple[CaptionText, str]:
    """`read_caption` plus the `caption_version` of the bytes read (one read, so they agree)."""
    data = read_caption_bytes(Path(path))
    return decode_caption(data, hint), caption_version(data)


def check_writable(target: Path, current: os.stat_result | None) -> None:
    # Mode bits are checked as well as access(): a server running as root would otherwise ignore
    # a file or folder the user deliberately made read-only.
    if current is not None and (not current.st_mode & 0o222 or not os.access(target, os.W_OK)):
        raise CaptionWriteError(f"Caption file is read-only: {target.name}")
    try:
        folder = os.stat(target.parent)
    except FileNotFoundError:
        raise CaptionWriteError(f"The folder of {target.name} does not exist") from None
    if not folder.st_mode & 0o222 or not os.access(target.parent, os.W_OK | os.X_OK):
        raise CaptionWriteError(f"The folder of {target.name} is read-only, cannot save captions in it")


UNCHECKED = object()  # write_caption without a version check


@dataclass(frozen=True)
class Written:
    version: str  # caption_version of the bytes written
    mtime_ns: int


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
        raise CaptionWriteError(f"Could not save {target.name}: {exc.strerror or exc}") from exc
    return Written(caption_version(data), os.stat(target).st_mtime_ns)


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
