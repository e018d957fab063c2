"""Reading and writing caption files without ever losing or silently mangling a caption.

Reads tolerate what real datasets contain (BOM, CRLF, Shift-JIS, GBK, Windows-125x, UTF-16 from
Notepad) and say so, detecting legacy encodings with charset-normalizer; writes are UTF-8 without
BOM with `\\n` newlines, atomic (temp file + fsync + rename) and keep the file's mode and owner.
A write can carry the version the editor saw, so two tabs editing one
caption get a conflict instead of one edit vanishing.

Versions are content hashes of the bytes on disk (`caption_version`), not mtimes: a coarse clock
cannot give two different contents one version, and a rescan can tell any difference. Writing
(versioned, under a folder lock) is `captionwrite`'s. Caption files are read only up to
`MAX_CAPTION_BYTES`.
"""
import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import charset_normalizer


CAPTION_EXTS = (".txt", ".caption", ".cap")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Captions are a line of tags or a paragraph: CLIP reads 77 tokens, FLUX's T5 512 (a few KB), and
# the longest real captions (VLM descriptions) are 2–4 KB. 64 KiB is over ten times that, yet keeps
# a page of 60 captions, an editor's chips and every read bounded; a bigger "caption" is a mistake
# (or an attack) and is refused at import, skipped with a reason at scan and never written.
MAX_CAPTION_BYTES = 64 * 1024



class CaptionWriteError(OSError):
    """A caption could not be written; `message` is fit to show the user."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.disk_full = disk_full  # answered 507 rather than 403: nothing is wrong with the file


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


class CaptionOutside(OSError):
    """The caption file is a symlink (or inside a symlinked folder) leading out of the root."""


def read_caption_bytes(path: Path, max_bytes: int = MAX_CAPTION_BYTES, *, within: Path | None = None,
                       resolved: bool = False) -> bytes:
    """The file's bytes, refusing (`CaptionTooLarge`) anything over `max_bytes` without reading it.

    With `within` (a real, symlink-free folder), a file whose real path lies outside it raises
    `CaptionOutside` and is never opened. Only regular files are read: a FIFO or device named
    like a caption raises OSError instead of blocking the reader. `resolved=True` says `path` is
    already real (as `paths.resolve_within` gives it): it is opened as it is, and a symlink put in
    its place since is refused (OSError) rather than followed.
    """
    real = path if resolved else os.path.realpath(path)
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


