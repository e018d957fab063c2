"""Turning a path that came from a user into a path we may touch.

Every route that reads or writes a dataset file goes through `resolve_within`, so a request can
never reach outside the configured dataset roots: not with `..`, not with an absolute path, and
not through a symlink (on the file or on any folder above it) whose target lies elsewhere.
"""
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath


class PathRefused(ValueError):
    """A user-supplied path points outside the allowed roots or is malformed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _real_roots(roots: list[Path]) -> list[Path]:
    if not roots:
        raise PathRefused("No dataset folder is configured")
    # Roots are resolved too: a root that is itself a symlink (/data -> /mnt/data) is legitimate.
    return [Path(os.path.realpath(root)) for root in roots]


def resolve_within(roots: list[Path], user_path: str) -> Path:
    """Return the real (symlink-free) absolute path of `user_path` if it stays inside a root.

    A relative `user_path` is taken relative to `roots[0]`; an absolute one must lie under any of
    the roots. The path need not exist (callers may be about to create it), but every symlink on
    the way, including a dangling one, must point inside a root. Raises `PathRefused` otherwise.
    """
    if not isinstance(user_path, str) or not user_path.strip():
        raise PathRefused("Empty path")
    if "\x00" in user_path:
        raise PathRefused("Path contains a NUL character")
    real_roots = _real_roots(roots)
    candidate = Path(user_path)
    if not candidate.is_absolute():
        candidate = Path(roots[0]) / candidate

    # Lexical check first, so `root/../etc` is refused by name even when it happens to resolve
    # somewhere harmless; then the real path, which follows symlinks the way the OS would.
    lexical = Path(os.path.abspath(candidate))
    lexical_roots = [Path(os.path.abspath(root)) for root in roots]
    if not any(lexical.is_relative_to(root) for root in lexical_roots + real_roots):
        raise PathRefused(f"Path is outside the dataset folders: {user_path}")
    real = Path(os.path.realpath(candidate))
    if not any(real.is_relative_to(root) for root in real_roots):
        raise PathRefused(f"Path leads outside the dataset folders (through a symlink or '..'): {user_path}")
    return real


def relative_to_root(roots: list[Path], path: Path) -> tuple[Path, str]:
    """Return (root, posix relative path) for a path already inside one of `roots`.

    The innermost root wins when roots are nested, so the relative path is the shortest one.
    Raises `PathRefused` if the path is under none of them.
    """
    real = Path(os.path.realpath(path))
    matches = [root for root in _real_roots(roots) if real.is_relative_to(root)]
    if not matches:
        raise PathRefused(f"Path is outside the dataset folders: {path}")
    root = max(matches, key=lambda r: len(r.parts))
    return root, PurePath(real.relative_to(root)).as_posix()


USER_PLACEHOLDER = "{user}"


@dataclass(frozen=True)
class DatasetRoot:
    """A folder datasets may be opened from, as one user sees it."""

    path: Path  # as configured (a symlinked root stays as written; resolve_within follows it)
    shared: bool  # configured without {user}: every account sees and edits it


def roots_for_user(configured: Sequence[str | Path], username: str) -> list[DatasetRoot]:
    """The dataset roots `username` may use: each configured root with `{user}` replaced by the
    user's name (their own folder, created on first use), and roots without `{user}` as shared.

    A name that is not one plain path component (`.`, `..`, a slash) gets no per-user root
    rather than someone else's.
    """
    roots: list[DatasetRoot] = []
    safe = username not in ("", ".", "..") and "/" not in username and "\\" not in username and "\x00" not in username
    for entry in configured:
        text = os.fspath(entry)
        if USER_PLACEHOLDER not in text:
            roots.append(DatasetRoot(Path(text), shared=True))
            continue
        if not safe:
            continue
        path = Path(text.replace(USER_PLACEHOLDER, username))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # an unusable root shows as missing; resolve_within still confines to it
        roots.append(DatasetRoot(path, shared=False))
    return roots


class FolderResolver:
    """`resolve_within` for many files of one dataset (a bulk edit's captions): each folder is
    resolved once, then a file that is not a symlink is its real folder plus its name (a
    symlinked file still goes the full way). Raises `PathRefused` as `resolve_within` does."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[str, str] = {}

    def __call__(self, relpath: str) -> str:
        folder, _, name = relpath.rpartition("/")
        if name in ("", ".", ".."):
            raise PathRefused(f"Not a file name: {relpath}")
        real_folder = self.folders.get(folder)
        if real_folder is None:
            real_folder = self.folders[folder] = str(resolve_within([self.root], folder or "."))
        candidate = os.path.join(real_folder, name)
        try:
            is_link = stat.S_ISLNK(os.lstat(candidate).st_mode)
        except FileNotFoundError:
            is_link = False
        return str(resolve_within([self.root], relpath)) if is_link else candidate
