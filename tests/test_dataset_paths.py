import os
from pathlib import Path

import pytest

from app.datasets.paths import PathRefused, relative_to_root, resolve_within


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    (root / "char" / "sub").mkdir(parents=True)
    (root / "char" / "a.png").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("secret")
    return root


def test_relative_path_resolves_inside_first_root(root: Path) -> None:
    assert resolve_within([root], "char/a.png") == (root / "char" / "a.png").resolve()


def test_absolute_path_inside_any_root_is_allowed(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_within([root, other], str(other / "x.txt")) == (other / "x.txt").resolve()


def test_path_that_does_not_exist_yet_is_allowed(root: Path) -> None:
    assert resolve_within([root], "char/new.txt") == (root / "char" / "new.txt").resolve()


@pytest.mark.parametrize("user_path", ["../secret.txt", "char/../../secret.txt", "char/sub/../../../secret.txt"])
def test_dotdot_escape_is_refused(root: Path, user_path: str) -> None:
    with pytest.raises(PathRefused):
        resolve_within([root], user_path)


def test_dotdot_that_stays_inside_is_allowed(root: Path) -> None:
    assert resolve_within([root], "char/sub/../a.png") == (root / "char" / "a.png").resolve()


def test_absolute_path_outside_roots_is_refused(root: Path, tmp_path: Path) -> None:
    with pytest.raises(PathRefused, match="outside"):
        resolve_within([root], str(tmp_path / "secret.txt"))
    with pytest.raises(PathRefused):
        resolve_within([root], "/etc/passwd")


def test_sibling_folder_with_same_prefix_is_refused(root: Path, tmp_path: Path) -> None:
    # "/x/datasets-evil" starts with the string "/x/datasets" but is not inside it.
    evil = tmp_path / "datasets-evil"
    evil.mkdir()
    with pytest.raises(PathRefused):
        resolve_within([root], str(evil / "a.png"))


def test_symlinked_file_leaving_root_is_refused(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", root / "char" / "link.txt")
    with pytest.raises(PathRefused, match="symlink"):
        resolve_within([root], "char/link.txt")


def test_symlinked_directory_component_leaving_root_is_refused(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path, root / "char" / "up")
    with pytest.raises(PathRefused):
        resolve_within([root], "char/up/secret.txt")
    # Also for a file that does not exist yet: writing it would land outside.
    with pytest.raises(PathRefused):
        resolve_within([root], "char/up/new.txt")


def test_dangling_symlink_pointing_outside_is_refused(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing.txt", root / "char" / "dangling.txt")
    with pytest.raises(PathRefused):
        resolve_within([root], "char/dangling.txt")


def test_symlink_staying_inside_root_is_allowed(root: Path) -> None:
    os.symlink(root / "char" / "a.png", root / "alias.png")
    assert resolve_within([root], "alias.png") == (root / "char" / "a.png").resolve()


def test_root_that_is_itself_a_symlink_works(root: Path, tmp_path: Path) -> None:
    link_root = tmp_path / "link-root"
    os.symlink(root, link_root)
    assert resolve_within([link_root], "char/a.png") == (root / "char" / "a.png").resolve()


@pytest.mark.parametrize("user_path", ["", "   ", "char/\x00a.png"])
def test_empty_or_nul_paths_are_refused(root: Path, user_path: str) -> None:
    with pytest.raises(PathRefused):
        resolve_within([root], user_path)


def test_relative_to_root_picks_innermost_root(root: Path) -> None:
    inner = root / "char"
    found_root, rel = relative_to_root([root, inner], root / "char" / "sub" / "x.png")
    assert found_root == inner.resolve()
    assert rel == "sub/x.png"


def test_relative_to_root_refuses_outside_path(root: Path, tmp_path: Path) -> None:
    with pytest.raises(PathRefused):
        relative_to_root([root], tmp_path / "secret.txt")


def test_roots_per_user_and_shared(tmp_path: Path) -> None:
    from app.datasets.paths import roots_for_user

    template = tmp_path / "people" / "{user}"
    shared = tmp_path / "team"
    alice = roots_for_user([template, shared], "alice")
    assert [(r.path, r.shared) for r in alice] == [(tmp_path / "people" / "alice", False), (shared, True)]
    assert (tmp_path / "people" / "alice").is_dir()  # made on first use
    bob = roots_for_user([template, shared], "bob")
    # Bob's roots do not contain Alice's folder, so nothing of hers resolves for him.
    with pytest.raises(PathRefused):
        resolve_within([r.path for r in bob], str(tmp_path / "people" / "alice" / "x.png"))
    with pytest.raises(PathRefused):
        resolve_within([r.path for r in bob], "../alice/x.png")
    assert [r.path for r in roots_for_user([template], "..")] == []


def test_symlinked_root_is_accepted_as_configured(tmp_path: Path) -> None:
    real = tmp_path / "mnt" / "data"
    (real / "set").mkdir(parents=True)
    link = tmp_path / "data"
    os.symlink(real, link)
    assert resolve_within([link], "set") == real / "set"
    assert resolve_within([link], str(link / "set")) == real / "set"
    assert relative_to_root([link], real / "set" / "a.png")[1] == "set/a.png"
