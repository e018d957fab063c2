"""The configured tag lists (TESSERA_TAG_LISTS) as one SQLite file per version of the lists.

Built once, in the background, by whichever process first needs it — the others wait on the build
lock, then open the same file read-only — so a million-row list costs one parse per version of
the lists instead of seconds and hundreds of MB in every process, and a request never waits for it.
"""
import csv
import fcntl
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from app.datasets.tagcomplete import TagIndex

log = logging.getLogger(__name__)
SCHEMA_VERSION = 2  # part of the cache file's name: a new layout builds a new file


class TagListCache:
    """The configured tag lists as one read-only `TagIndex`, built once per version of the lists.

    `cache_dir` holds `<hash>.sqlite`, where the hash covers each list's path, size and mtime
    (and SCHEMA_VERSION), so editing a list builds a new file. One instance per process; its
    `index()` never blocks: it returns None while the file is being built (by a background
    thread here, or by another process holding the build lock) and the index once it exists.
    """

    def __init__(self, paths: Sequence[str | Path], cache_dir: Path) -> None:
        self.paths = [Path(p) for p in paths]
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._index: TagIndex | None = None
        self._builder: threading.Thread | None = None
        self.error: str | None = None

    def _key(self) -> str:
        digest = hashlib.sha256(str(SCHEMA_VERSION).encode())
        for path in self.paths:
            try:
                info = path.stat()
                digest.update(f"{path.resolve()}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
            except OSError:
                digest.update(f"{path}\0missing\0".encode())
        return digest.hexdigest()[:32]

    def index(self) -> TagIndex | None:
        """The loaded lists, or None while they are still being built (or none are configured)."""
        if self._index is not None or not self.paths:
            return self._index
        with self._lock:
            if self._index is not None:
                return self._index
            target = self.cache_dir / f"{self._key()}.sqlite"
            if target.is_file():
                self._index = TagIndex(target, read_only=True)
                return self._index
            if self._builder is None or not self._builder.is_alive():
                self._builder = threading.Thread(target=self._build, args=(target,), name="tag-list-build", daemon=True)
                self._builder.start()
            return None

    def wait(self, timeout: float | None = None) -> TagIndex | None:
        """Block until the lists are ready (for the CLI, benchmarks and tests)."""
        if self.index() is None and self._builder is not None:
            self._builder.join(timeout)
        return self.index()

    def _build(self, target: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.cache_dir / f"{target.stem}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(lock_fd, fcntl.LOCK_EX)  # another process building the same lists: wait for it
            if target.is_file():
                return
            tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                index = TagIndex(tmp)
                for path in self.paths:
                    try:
                        added = index.add_csv(path)
                        log.info("Tag list %s: %s tags", path.name, f"{added:,}")
                    except (OSError, UnicodeDecodeError, csv.Error) as exc:
                        log.warning("Tag list %s not loaded: %s", path, exc)
                index._connection().close()
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        except Exception as exc:  # noqa: BLE001 - a failed build must not kill the thread silently
            self.error = str(exc)
            log.exception("Building the tag list cache failed")
        finally:
            os.close(lock_fd)
