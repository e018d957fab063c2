"""Batched caption writes keep write_caption's guarantees for every file."""
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from app.datasets.bulkwrite import CaptionWrite, write_captions
from app.datasets.captions import caption_version
from app.datasets.captionwrite import LOCK_NAME


def v(path):
    return caption_version(Path(path).read_bytes())


def test_writes_utf8_without_bom_and_keeps_the_mode(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfold\r\n")
    path.chmod(0o640)
    outcome = write_captions([CaptionWrite(path, "\ufeffcafé,\r\nsecond", v(path))])
    assert not outcome.conflicts and not outcome.errors
    assert outcome.written[0].version == v(path) == caption_version("café,\nsecond".encode())
    assert path.read_bytes() == "café,\nsecond".encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, "a.txt"]  # no temp file left


def test_changed_file_is_a_conflict_and_stays(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("theirs")
    outcome = write_captions([CaptionWrite(path, "mine", caption_version(b"what the editor saw"))])
    assert outcome.written == {} and outcome.conflicts[0].current_text == "theirs"
    assert path.read_text() == "theirs"


def test_new_file_must_not_exist_yet(tmp_path):
    existing, new = tmp_path / "a.txt", tmp_path / "b.txt"
    existing.write_text("made elsewhere")
    outcome = write_captions([CaptionWrite(existing, "x", None), CaptionWrite(new, "fresh", None)])
    assert list(outcome.conflicts) == [0] and list(outcome.written) == [1]
    assert existing.read_text() == "made elsewhere" and new.read_text() == "fresh"


def test_none_deletes_the_caption(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("created by an edit that is undone")
    outcome = write_captions([CaptionWrite(path, None, v(path)), CaptionWrite(tmp_path / "gone.txt", None, None)])
    assert outcome.written == {0: None, 1: None}
    assert not path.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_read_only_file_and_folder_are_errors_not_exceptions(tmp_path):
    locked = tmp_path / "locked.txt"
    locked.write_text("keep")
    locked.chmod(0o444)
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "b.txt").write_text("keep too")
    fine = tmp_path / "fine.txt"
    fine.write_text("old")
    folder.chmod(0o555)
    try:
        outcome = write_captions([
            CaptionWrite(locked, "x", v(locked)),
            CaptionWrite(folder / "b.txt", "x", v(folder / "b.txt")),
            CaptionWrite(fine, "new", v(fine)),
        ])
    finally:
        folder.chmod(0o755)
    assert "read-only" in outcome.errors[0] and "read-only" in outcome.errors[1]
    assert list(outcome.written) == [2] and fine.read_text() == "new"
    assert locked.read_text() == "keep" and (folder / "b.txt").read_text() == "keep too"


def test_original_is_kept_once_before_the_first_overwrite(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "a.txt"
    path.write_bytes(b"\xef\xbb\xbforiginal\r\n")
    backups = tmp_path / "backups"
    write_captions([CaptionWrite(path, "first edit", v(path), backups, "sub/a.txt")])
    write_captions([CaptionWrite(path, "second edit", v(path), backups, "sub/a.txt")])
    assert path.read_text() == "second edit"
    assert (backups / "sub" / "a.txt").read_bytes() == b"\xef\xbb\xbforiginal\r\n"
    assert (backups / "sub" / "a.txt").stat().st_ino != path.stat().st_ino  # not tied to the live file


def test_no_backup_is_left_when_the_write_is_refused(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("theirs")
    backups = tmp_path / "backups"
    outcome = write_captions([CaptionWrite(path, "mine", caption_version(b"older"), backups, "a.txt")])
    assert list(outcome.conflicts) == [0]
    assert not (backups / "a.txt").exists()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a second filesystem (/dev/shm)")
def test_backup_on_another_filesystem_is_a_copy(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"original\r\n")
    backups = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        if os.stat(backups).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same filesystem here")
        outcome = write_captions([CaptionWrite(path, "edited", v(path), backups, "a.txt")])
        assert list(outcome.written) == [0]
        assert (backups / "a.txt").read_bytes() == b"original\r\n" and path.read_text() == "edited"
        assert sorted(p.name for p in backups.iterdir()) == ["a.txt"]  # no staged copy left behind
    finally:
        shutil.rmtree(backups)
