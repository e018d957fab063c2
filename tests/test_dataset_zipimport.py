import io
import struct
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.zipimport import ZipRefused, extract_dataset_zip


def png_bytes(colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def lying_about_size(data: bytes, declared: int) -> io.BytesIO:
    """Patch the zip so its only entry declares `declared` bytes but inflates to far more."""
    patched = bytearray(data)
    struct.pack_into("<I", patched, 22, declared)  # local header: uncompressed size
    central = patched.find(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, declared)  # central directory
    return io.BytesIO(bytes(patched))


def test_images_captions_and_folders_are_extracted(tmp_path: Path) -> None:
    zipped = make_zip([
        ("a.png", png_bytes()),
        ("a.txt", b"tok, 1girl"),
        ("img/10_tok woman/b.JPG", png_bytes("blue")),
        ("img/10_tok woman/b.caption", b"caption"),
        ("meta_cap.json", b"{}"),
        ("img/", b""),
    ])
    dest = tmp_path / "ds"
    result = extract_dataset_zip(zipped, dest)
    assert result.images == ["a.png", "img/10_tok woman/b.JPG"]
    assert result.captions == ["a.txt", "img/10_tok woman/b.caption"]
    assert result.metadata_files == ["meta_cap.json"]
    assert (dest / "a.txt").read_bytes() == b"tok, 1girl"
    assert (dest / "img" / "10_tok woman" / "b.JPG").read_bytes() == png_bytes("blue")
    assert result.skipped == [] and result.ignored_junk == 0


def test_junk_is_ignored_and_other_files_skipped_with_reason(tmp_path: Path) -> None:
    zipped = make_zip([
        ("a.png", png_bytes()),
        ("__MACOSX/._a.png", b"\x00\x05\x16\x07"),
        ("._b.png", b"\x00\x05\x16\x07"),
        (".DS_Store", b"junk"),
        ("sub/Thumbs.db", b"junk"),
        (".git/objects/x.png", b"junk"),
        ("run.sh", b"rm -rf /"),
        ("A.PNG", png_bytes("blue")),
    ])
    dest = tmp_path / "ds"
    result = extract_dataset_zip(zipped, dest)
    assert result.ignored_junk == 5
    assert result.skipped == [("run.sh", "unsupported file type .sh"), ("A.PNG", "duplicate name")]
    assert sorted(p.name for p in dest.rglob("*")) == ["a.png"]


def test_symlink_entries_are_skipped(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("evil.png")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    zipped = make_zip([("a.png", png_bytes()), (link, b"/etc/passwd")])
    dest = tmp_path / "ds"
    result = extract_dataset_zip(zipped, dest)
    assert result.skipped == [("evil.png", "symbolic link")]
    assert not (dest / "evil.png").exists() and not (dest / "evil.png").is_symlink()


@pytest.mark.parametrize("name", [
    "../evil.png", "ok/../../evil.png", "/etc/evil.png", "C:/evil.png", "c:evil.png", "..\\..\\evil.png", "sub\\..\\..\\evil.png",
])
def test_zip_slip_names_refuse_the_whole_zip(tmp_path: Path, name: str) -> None:
    zipped = make_zip([("a.png", png_bytes()), (name, png_bytes())])
    dest = tmp_path / "work" / "ds"
    with pytest.raises(ZipRefused):
        extract_dataset_zip(zipped, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "work" / "evil.png").exists()


def test_backslash_paths_become_folders(tmp_path: Path) -> None:
    zipped = make_zip([("sub\\a.png", png_bytes())])
    result = extract_dataset_zip(zipped, tmp_path / "ds")
    assert result.images == ["sub/a.png"]
    assert (tmp_path / "ds" / "sub" / "a.png").is_file()


def test_bomb_lying_about_actual_size_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    bomb = make_zip([("bomb.png", b"\x00" * 20_000_000)]).getvalue()
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ZipRefused):
        extract_dataset_zip(lying_about_size(bomb, 1000), work / "ds", max_total_bytes=1_000_000)
    assert list(work.iterdir()) == []


def test_declared_total_over_limit_is_refused_before_writing(tmp_path: Path) -> None:
    zipped = make_zip([(f"{n}.png", b"\x00" * 4000) for n in range(5)])
    with pytest.raises(ZipRefused, match="limit"):
        extract_dataset_zip(zipped, tmp_path / "ds", max_total_bytes=10_000)
    assert list(tmp_path.iterdir()) == []


def test_too_many_entries_is_refused(tmp_path: Path) -> None:
    zipped = make_zip([(f"{n}.png", b"x") for n in range(11)])
    with pytest.raises(ZipRefused, match="11 entries"):
        extract_dataset_zip(zipped, tmp_path / "ds", max_files=10)


def test_oversized_single_file_is_skipped(tmp_path: Path) -> None:
    zipped = make_zip([("a.png", png_bytes()), ("huge.png", b"\x00" * 5000)])
    result = extract_dataset_zip(zipped, tmp_path / "ds", max_file_bytes=1000)
    assert result.images == ["a.png"]
    assert result.skipped == [("huge.png", "larger than the 1,000 bytes limit per file")]


def test_corrupt_entry_late_in_zip_leaves_nothing(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.png", png_bytes()), ("b.txt", b"caption text " * 100)]).getvalue())
    second = data.find(b"PK\x03\x04", 4)
    name_len, extra_len = struct.unpack_from("<HH", data, second + 26)
    payload = second + 30 + name_len + extra_len
    data[payload + 2] ^= 0xFF  # damage b.txt's deflate stream
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ZipRefused):
        extract_dataset_zip(io.BytesIO(bytes(data)), work / "ds")
    assert list(work.iterdir()) == []


def test_not_a_zip_and_no_images(tmp_path: Path) -> None:
    with pytest.raises(ZipRefused, match="Not a readable zip"):
        extract_dataset_zip(io.BytesIO(b"not a zip"), tmp_path / "ds")
    with pytest.raises(ZipRefused, match="no images"):
        extract_dataset_zip(make_zip([("a.txt", b"x")]), tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_existing_non_empty_destination_is_refused(tmp_path: Path) -> None:
    dest = tmp_path / "ds"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ZipRefused, match="not empty"):
        extract_dataset_zip(make_zip([("a.png", png_bytes())]), dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert extract_dataset_zip(make_zip([("a.png", png_bytes())]), empty).images == ["a.png"]


def test_zip_from_path_keeps_dates(tmp_path: Path) -> None:
    path = tmp_path / "upload.zip"
    info = zipfile.ZipInfo("a.png", date_time=(2021, 5, 4, 3, 2, 0))
    path.write_bytes(make_zip([(info, png_bytes())]).getvalue())
    extract_dataset_zip(path, tmp_path / "ds")
    assert time.localtime((tmp_path / "ds" / "a.png").stat().st_mtime)[:5] == (2021, 5, 4, 3, 2)


# --- bombs, fakes and quotas ------------------------------------------------------------------

from tests.datasets_helpers import honest_bomb

MiB = 1 << 20


def test_the_review_zip_bomb_is_refused_quickly_writing_nothing(tmp_path: Path) -> None:
    bomb = honest_bomb(50, 199 * MiB)
    assert len(bomb.getvalue()) < 12 * MiB
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ZipRefused, match=r"more than 100×"):
        extract_dataset_zip(bomb, work / "ds")
    assert list(work.iterdir()) == []


def test_archive_ratio_is_limited_even_when_each_entry_is_small(tmp_path: Path) -> None:
    # 100 entries of 900 KiB zeros: each under the per-entry floor, together a 88 MiB bomb.
    bomb = honest_bomb(100, 900 * 1024)
    with pytest.raises(ZipRefused, match=r"more than 20×"):
        extract_dataset_zip(bomb, tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_entries_that_are_not_images_are_skipped_before_writing(tmp_path: Path) -> None:
    zipped = make_zip([("a.png", png_bytes()), ("fake.png", b"\x00" * 4000), ("script.jpg", b"#!/bin/sh\nrm -rf /\n"),
                       ("b.webp", b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(20))])
    dest = tmp_path / "ds"
    result = extract_dataset_zip(zipped, dest)
    assert result.images == ["a.png", "b.webp"]
    assert dict(result.skipped) == {"fake.png": "not an image: its contents are not PNG, JPEG, WebP, GIF or BMP",
                                    "script.jpg": "not an image: its contents are not PNG, JPEG, WebP, GIF or BMP"}
    assert sorted(p.name for p in dest.iterdir()) == ["a.png", "b.webp"]


def test_oversized_caption_is_skipped_with_a_reason(tmp_path: Path) -> None:
    zipped = make_zip([("a.png", png_bytes()), ("a.txt", b"tag, " * 20_000), ("b.png", png_bytes()), ("b.txt", b"ok")])
    result = extract_dataset_zip(zipped, tmp_path / "ds")
    assert result.captions == ["b.txt"]
    assert result.skipped == [("a.txt", "caption larger than the 64 KiB limit per caption")]
    assert not (tmp_path / "ds" / "a.txt").exists()


def test_quota_refuses_before_writing(tmp_path: Path) -> None:
    zipped = make_zip([("a.png", png_bytes()), ("b.png", png_bytes("blue"))])
    with pytest.raises(ZipRefused, match="quota has only 100 bytes left"):
        extract_dataset_zip(zipped, tmp_path / "ds", quota_left=100)
    assert list(tmp_path.iterdir()) == []
    assert extract_dataset_zip(zipped, tmp_path / "ds", quota_left=10 * MiB).images == ["a.png", "b.png"]


def test_entry_count_is_refused_from_the_end_record_before_parsing(tmp_path: Path, monkeypatch) -> None:
    zipped = make_zip([(f"{n}.png", b"") for n in range(30)])
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(1))
    with pytest.raises(ZipRefused, match="30 entries; the limit is 20"):
        extract_dataset_zip(zipped, tmp_path / "ds", max_files=20)
    assert parsed == []  # the central directory was never read into memory
