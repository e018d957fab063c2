"""Reading and writing caption files without ever losing or silently mangling a caption.

Reads tolerate what real datasets contain (BOM, CRLF, Windows-1252, UTF-16 from Notepad) and say
so; writes are UTF-8 without BOM with `\\n` newlines, atomic (temp file + fsync + rename) and keep
the file's mode and owner. A write can carry the mtime the editor saw, so two tabs editing one
caption get a conflict instead of one edit vanishing.
"""
import os
import shutil
import stat
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.atomic import fsync_directory, storage_error_message

CAPTION_EXTS = (".txt", ".caption", ".cap")

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

# Serialises check-then-replace for versioned writes within this process, so two requests for
# the same caption cannot both pass the mtime check. (Separate worker processes are still only
# protected by the mtime check itself.)
caption_write_lock = threading.Lock()


class CaptionWriteError(OSError):
    """A caption could not be written; `message` is fit to show the user."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.disk_full = disk_full  # answered 507 rather than 403: nothing is wrong with the file


class CaptionConflict(Exception):
    """The caption changed on disk since the editor loaded it.

    Carries what is on disk now (`current_text` is None if the file was deleted) so the UI can
    show both versions and let the user choose.
    """

    def __init__(self, path: Path, current_text: str | None, current_mtime_ns: int | None) -> None:
        what = "was deleted" if current_text is None else "was changed"
        super().__init__(f"{path.name} {what} on disk after it was opened; reload to see the other edit")
        self.path = path
        self.current_text = current_text
        self.current_mtime_ns = current_mtime_ns


@dataclass(frozen=True)
class CaptionText:
    text: str  # newlines normalised to "\n", BOM removed, otherwise exactly as on disk
    encoding: str  # "utf-8", "utf-16", "cp1252" or "latin-1"
    had_bom: bool
    newline: str  # the file's newline style: "\n", "\r\n" or "\r"
    warning: str | None  # set when the file was not UTF-8; saving converts it
    lines: int  # number of lines, not counting a final newline

    @property
    def first_line(self) -> str:
        """The caption kohya trains on: it reads only the first line."""
        return self.text.split("\n", 1)[0].strip()


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


def decode_caption(data: bytes) -> CaptionText:
    """Decode caption bytes; see `read_caption`."""
    had_bom = data.startswith(_UTF8_BOM)
    warning = None
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
            try:
                encoding, text = "cp1252", data.decode("cp1252")
                warning = "not UTF-8; read as Windows-1252 — saving will convert it to UTF-8"
            except UnicodeDecodeError:
                # Latin-1 maps every byte, so nothing is dropped; the warning asks for a look.
                encoding, text = "latin-1", data.decode("latin-1")
                warning = "not UTF-8; read as Latin-1 — check accented letters; saving will convert it to UTF-8"
    if "\r\n" in text:
        newline = "\r\n"
    elif "\r" in text:
        newline = "\r"
    else:
        newline = "\n"
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = len(text.split("\n")) - (1 if text.endswith("\n") else 0) if text else 0
    return CaptionText(text, encoding, had_bom, newline, warning, lines)


def read_caption(path: Path) -> CaptionText:
    """Read a caption file, tolerating a BOM, CRLF and non-UTF-8 text (with a warning)."""
    return decode_caption(Path(path).read_bytes())


def check_writable(target: Path, current: os.stat_result | None) -> None:
    # Mode bits are checked as well as access(): a server running as root would otherwise ignore
    # a file or folder the user deliberately made read-only.
    if current is not None and (not current.st_mode & 0o222 or not os.access(target, os.W_OK)):
        raise CaptionWriteError(f"Caption file is read-only: {target}")
    try:
        folder = os.stat(target.parent)
    except FileNotFoundError:
        raise CaptionWriteError(f"Folder does not exist: {target.parent}") from None
    if not folder.st_mode & 0o222 or not os.access(target.parent, os.W_OK | os.X_OK):
        raise CaptionWriteError(f"Folder is read-only, cannot save captions in it: {target.parent}")


def write_caption(path: Path, text: str, *, expected_mtime_ns: int | None = None) -> os.stat_result:
    """Atomically write `text` as UTF-8 (no BOM, `\\n` newlines) and return the new file's stat.

    `expected_mtime_ns` is the mtime the editor loaded; if the file has changed (or vanished)
    since, `CaptionConflict` is raised and nothing is written. A symlinked caption is written
    through to its target so the link survives. Failures raise `CaptionWriteError`.
    """
    target = Path(os.path.realpath(path))
    text = text.replace("\r\n", "\n").replace("\r", "\n").removeprefix("\ufeff")
    data = text.encode("utf-8")
    with caption_write_lock:
        try:
            current = os.stat(target)
        except FileNotFoundError:
            current = None
        if expected_mtime_ns is not None and (current is None or current.st_mtime_ns != expected_mtime_ns):
            on_disk = read_caption(target).text if current is not None else None
            raise CaptionConflict(target, on_disk, current.st_mtime_ns if current else None)
        check_writable(target, current)

        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            # New files get 0o666 minus the umask, like any editor would create them.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
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
                    # Coarse filesystem clocks can give two quick writes the same mtime; the
                    # version check relies on every write moving it forward.
                    written = os.stat(tmp)
                    if written.st_mtime_ns <= current.st_mtime_ns:
                        os.utime(tmp, ns=(written.st_atime_ns, current.st_mtime_ns + 1))
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_directory(target.parent)
        except OSError as exc:
            full = storage_error_message(exc)
            raise CaptionWriteError(full or f"Could not save {target.name}: {exc.strerror or exc}",
                                    disk_full=bool(full)) from exc
        return os.stat(target)


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
