import os
import stat
import threading
from pathlib import Path

import pytest

from app.datasets.captions import (
    MAX_CAPTION_BYTES,
    CaptionConflict,
    CaptionTooLarge,
    CaptionWriteError,
    caption_version,
    find_caption,
    read_caption,
    read_caption_versioned,
)
from app.datasets.captionwrite import LOCK_NAME, backup_original, write_caption


def test_find_caption_prefers_txt_then_caption_then_cap(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    assert find_caption(image) is None
    (tmp_path / "a.cap").write_text("cap")
    assert find_caption(image) == tmp_path / "a.cap"
    (tmp_path / "a.caption").write_text("caption")
    assert find_caption(image) == tmp_path / "a.caption"
    (tmp_path / "a.txt").write_text("txt")
    assert find_caption(image) == tmp_path / "a.txt"


def test_find_caption_keeps_dots_in_stem(tmp_path: Path) -> None:
    (tmp_path / "v1.2.final.txt").write_text("x")
    assert find_caption(tmp_path / "v1.2.final.png") == tmp_path / "v1.2.final.txt"


def test_bom_and_crlf_are_tolerated_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf1girl, smile\r\nsecond line\r\n")
    caption = read_caption(path)
    assert caption.text == "1girl, smile\nsecond line\n"
    assert caption.had_bom and caption.newline == "\r\n" and caption.encoding == "utf-8"
    assert caption.warning is None
    assert caption.lines == 2
    assert caption.first_line == "1girl, smile"


def test_write_normalises_to_utf8_without_bom_and_lf(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfold\r\n")
    write_caption(path, "\ufeffcaf\u00e9, star \\(symbol\\)\r\nline two\r\n")
    assert path.read_bytes() == "café, star \\(symbol\\)\nline two\n".encode()


def test_round_trip_keeps_every_line_duplicate_and_escape(tmp_path: Path) -> None:
    path = tmp_path / "a.caption"
    original = "tok, 1girl, 1girl, star \\(symbol\\)\n\nalt caption, with comma\n"
    write_caption(path, original)
    assert read_caption(path).text == original
    assert read_caption(path).lines == 3
    assert read_caption(path).first_line == "tok, 1girl, 1girl, star \\(symbol\\)"


def test_empty_caption_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_caption(path, "")
    assert path.read_bytes() == b""
    caption = read_caption(path)
    assert caption.text == "" and caption.lines == 0 and caption.first_line == ""


def test_windows_1252_is_shown_right_but_marked_uncertain(tmp_path: Path) -> None:
    # Windows-1250 and -1257 read these bytes just as well: shown as Windows-1252, never guessed into a write.
    path = tmp_path / "a.txt"
    path.write_bytes("café, naïve – “quoted”".encode("cp1252"))
    caption = read_caption(path)
    assert caption.text == "café, naïve – “quoted”"
    assert caption.encoding == "cp1252" and not caption.confident
    assert "cp1250" in caption.alternatives
    assert "uncertain" in caption.warning and "Windows-1252" in caption.warning
    assert "encoding_uncertain" in caption.problems


@pytest.mark.parametrize(("text", "codec", "expected"), [
    ("mychar, 少女, 笑顔", "shift_jis", "cp932"),
    ("mychar, 少女, 微笑", "gbk", "gb18030"),
    ("mychar, 少女, 微笑", "big5", "big5"),
    ("mychar, 소녀, 미소, 긴 머리, 파란 눈, 교복, 웃는 얼굴, 실내", "euc-kr", "cp949"),
    ("mychar, девушка с длинными волосами, улыбка, голубые глаза, школьная форма", "cp1251", "cp1251"),
])
def test_legacy_encodings_are_detected(tmp_path: Path, text: str, codec: str, expected: str) -> None:
    path = tmp_path / "j.txt"
    path.write_bytes(text.encode(codec))
    caption = read_caption(path)
    assert (caption.text, caption.encoding, caption.confident) == (text, expected, True)
    assert caption.problems == ("not_utf8",)


@pytest.mark.parametrize(("texts", "codec", "expected"), [
    (["mychar, 소녀, 미소", "mychar, 긴 머리, 파란 눈", "mychar, 교복, 웃는 얼굴"], "euc-kr", "cp949"),
    (["mychar, девушка, улыбка", "mychar, длинные волосы, голубые глаза", "mychar, школьная форма, улица, ночь"],
     "cp1251", "cp1251"),
])
def test_short_captions_tie_alone_and_are_settled_by_the_dataset(texts: list[str], codec: str, expected: str) -> None:
    from app.datasets.captions import dataset_encoding, decode_caption

    alone = decode_caption(texts[0].encode(codec))
    assert not alone.confident and alone.alternatives  # Greek/KOI8-R, EUC-JP/GBK read it as well
    hint = dataset_encoding([t.encode(codec) for t in texts])
    assert hint == expected
    together = decode_caption(texts[0].encode(codec), hint)
    assert (together.text, together.confident) == (texts[0], True)


def test_bytes_no_encoding_reads_cleanly_are_uncertain(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"caf\xe9 \x81")
    caption = read_caption(path)
    assert not caption.confident
    assert "not UTF-8" in caption.warning


def test_trainer_problems_are_named() -> None:
    from app.datasets.captions import decode_caption

    assert decode_caption(b"\xef\xbb\xbfmychar, 1girl").problems == ("bom",)
    first_empty = decode_caption(b"\r\nmychar, 1girl\r\n")
    assert first_empty.first_line == "" and first_empty.problems == ("first_line_empty",)
    assert decode_caption(b"a, b\nc, d\n").problems == ("multi_line",)
    assert decode_caption(b"a, b\n\n").problems == ()


def test_utf16_from_notepad_is_read_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes("\ufefflong hair, smile\r\n".encode("utf-16-le"))
    caption = read_caption(path)
    assert caption.text == "long hair, smile\n"
    assert caption.encoding == "utf-16" and "UTF-16" in caption.warning


def test_write_keeps_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_caption(path, "new")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_text() == "new"


def test_new_file_gets_umask_mode_not_tempfile_mode(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    old_umask = os.umask(0o022)
    try:
        write_caption(path, "x")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_caption(path, "one")
    write_caption(path, "two")
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME, "a.txt"]


def test_read_only_file_gives_clear_error_and_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("original")
    os.chmod(path, 0o444)
    with pytest.raises(CaptionWriteError, match="read-only"):
        write_caption(path, "changed")
    assert path.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # refused before even locking


def test_read_only_folder_gives_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(CaptionWriteError, match="folder of a.txt is read-only"):
            write_caption(folder / "a.txt", "x")
        assert list(folder.iterdir()) == []
    finally:
        os.chmod(folder, 0o755)


def test_conflict_when_another_tab_saved_first(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    loaded = write_caption(path, "1girl")
    # Tab B saves right away (same clock tick is likely): its edit must still be detected.
    write_caption(path, "1girl, smile", expected_version=loaded.version)
    with pytest.raises(CaptionConflict) as conflict:
        write_caption(path, "1girl, hat", expected_version=loaded.version)
    assert conflict.value.current_text == "1girl, smile"
    assert conflict.value.current_version == caption_version(b"1girl, smile")
    assert path.read_text() == "1girl, smile"


def test_version_is_the_content_not_the_clock(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    first = write_caption(path, "a")
    os.utime(path, ns=(first.mtime_ns, first.mtime_ns))
    second = write_caption(path, "b", expected_version=first.version)
    os.utime(path, ns=(first.mtime_ns, first.mtime_ns))  # a coarse clock: same mtime for both writes
    assert second.version == caption_version(b"b") != first.version
    with pytest.raises(CaptionConflict):
        write_caption(path, "c", expected_version=first.version)
    third = write_caption(path, "c", expected_version=second.version)
    assert path.read_text() == "c" and third.version == caption_version(b"c")
    assert read_caption_versioned(path)[1] == third.version


def test_conflict_when_file_was_deleted(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    loaded = write_caption(path, "a")
    path.unlink()
    with pytest.raises(CaptionConflict) as conflict:
        write_caption(path, "b", expected_version=loaded.version)
    assert conflict.value.current_text is None and conflict.value.current_version is None
    assert not path.exists()


def test_new_caption_conflicts_when_one_appeared_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("made elsewhere")
    with pytest.raises(CaptionConflict):
        write_caption(path, "mine", expected_version=None)
    assert path.read_text() == "made elsewhere"


def test_oversized_caption_is_neither_read_nor_written(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a, " * (MAX_CAPTION_BYTES // 3 + 1))
    with pytest.raises(CaptionTooLarge, match="big.txt is 64 KiB; captions are limited to 64 KiB"):
        read_caption(path)
    with pytest.raises(CaptionTooLarge):
        write_caption(tmp_path / "new.txt", "x" * (MAX_CAPTION_BYTES + 1))
    assert not (tmp_path / "new.txt").exists()
    # Its version matches no editor's, so a save over it is a conflict, never a silent overwrite.
    with pytest.raises(CaptionConflict):
        write_caption(path, "short", expected_version=caption_version(b""))


def test_many_threads_one_version_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    loaded = write_caption(path, "start")
    barrier = threading.Barrier(8)
    results: list[str] = []

    def save(n: int) -> None:
        barrier.wait()
        try:
            write_caption(path, f"edit {n}", expected_version=loaded.version)
            results.append(f"saved {n}")
        except CaptionConflict:
            results.append("conflict")

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = [r for r in results if r.startswith("saved")]
    assert len(saved) == 1 and results.count("conflict") == 7
    assert path.read_text() == f"edit {saved[0].split()[1]}"


def test_write_through_symlink_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    os.symlink(target, link)
    write_caption(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_backup_keeps_first_original_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "a.txt"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbforiginal\r\n")
    backups = tmp_path / "backups"
    backup = backup_original(path, backups, "char/a.txt")
    assert backup == backups / "char" / "a.txt"
    write_caption(path, "edited once")
    assert backup_original(path, backups, "char/a.txt") == backup
    write_caption(path, "edited twice")
    assert backup.read_bytes() == b"\xef\xbb\xbforiginal\r\n"
    assert [p.name for p in backup.parent.iterdir()] == ["a.txt"]


def test_backup_default_location_mirrors_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("x")
    backup = backup_original(path, tmp_path / "bk")
    assert backup.read_text() == "x"
    assert backup.as_posix().endswith(path.resolve().as_posix())


def test_backup_of_missing_file_is_none_and_refuses_escape(tmp_path: Path) -> None:
    assert backup_original(tmp_path / "missing.txt", tmp_path / "bk") is None
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError):
        backup_original(tmp_path / "a.txt", tmp_path / "bk", "../escape.txt")
