import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.scan import ScanError, scan_folder
from tests.datasets_helpers import save_image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size but that has no pixel data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def known_from(records) -> dict[str, tuple[int, int, str | None]]:
    return {r.relpath: (r.size, r.mtime_ns, r.caption_version) for r in records}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    save_image(root / "a.png")
    (root / "a.txt").write_text("tok, 1girl")
    save_image(root / "sub" / "b.jpg", "blue")
    (root / "sub" / "b.caption").write_bytes("caf\xe9".encode("cp1252"))
    save_image(root / "no_caption.webp", "green")
    (root / "notes.md").write_text("not an image")
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07 apple double")
    (root / ".hidden").mkdir()
    save_image(root / ".hidden" / "thumb.png")
    return root


def test_first_scan_reads_everything(dataset: Path) -> None:
    result = scan_folder(dataset, known={})
    records = {r.relpath: r for r in result.added}
    assert sorted(records) == ["a.png", "no_caption.webp", "sub/b.jpg"]
    a = records["a.png"]
    assert (a.width, a.height, a.format, a.error) == (64, 48, "PNG", None)
    assert a.caption_relpath == "a.txt" and a.caption_text == "tok, 1girl"
    assert len(a.content_hash) == 64 and isinstance(a.phash, int)
    assert a.size == (dataset / "a.png").stat().st_size
    b = records["sub/b.jpg"]
    assert b.caption_relpath == "sub/b.caption" and b.caption_text == "café"
    assert "Windows-1252" in b.caption_warning and "not_utf8" in b.caption_problems
    assert records["no_caption.webp"].caption_relpath is None
    assert result.changed == result.removed == result.unchanged == []


def test_rescan_only_inspects_changed_files(dataset: Path) -> None:
    first = scan_folder(dataset, known={})
    known = known_from(first.added)
    save_image(dataset / "a.png", "yellow", (80, 80))
    (dataset / "sub" / "b.jpg").unlink()
    save_image(dataset / "new.png", "white")
    progress: list[tuple[int, int]] = []
    second = scan_folder(dataset, known=known, on_progress=lambda done, total: progress.append((done, total)))
    assert [r.relpath for r in second.added] == ["new.png"]
    assert [(r.relpath, r.width) for r in second.changed] == [("a.png", 80)]
    assert second.removed == ["sub/b.jpg"]
    assert second.unchanged == ["no_caption.webp"]
    assert second.captions_changed == []
    assert progress[-1] == (2, 2)


def test_unchanged_image_is_not_reopened(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_from(scan_folder(dataset, known={}).added)
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))
    result = scan_folder(dataset, known=known)
    assert opened == []
    assert sorted(result.unchanged) == ["a.png", "no_caption.webp", "sub/b.jpg"]


def test_caption_edited_elsewhere_is_reported_for_unchanged_image(dataset: Path) -> None:
    known = known_from(scan_folder(dataset, known={}).added)
    caption = dataset / "a.txt"
    before = caption.stat()
    caption.write_text("tok, 1girl, edited")
    os.utime(caption, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size class, same mtime: still seen
    (dataset / "no_caption.txt").write_text("new caption")
    result = scan_folder(dataset, known=known)
    changed = {c.image_relpath: c for c in result.captions_changed}
    assert sorted(changed) == ["a.png", "no_caption.webp"]
    assert changed["a.png"].caption_text == "tok, 1girl, edited"
    assert changed["no_caption.webp"].caption_relpath == "no_caption.txt"


def test_known_without_caption_state_reports_every_caption(dataset: Path) -> None:
    first = scan_folder(dataset, known={})
    known = {r.relpath: (r.size, r.mtime_ns) for r in first.added}
    result = scan_folder(dataset, known=known)
    assert sorted(c.image_relpath for c in result.captions_changed) == ["a.png", "no_caption.webp", "sub/b.jpg"]


def test_corrupt_and_truncated_images_become_errors(dataset: Path) -> None:
    (dataset / "garbage.png").write_bytes(b"this is not a png")
    good = dataset / "a.png"
    (dataset / "truncated.png").write_bytes(good.read_bytes()[:60])
    result = scan_folder(dataset, known={})
    records = {r.relpath: r for r in result.added}
    assert records["garbage.png"].error.startswith("Cannot read image:")
    assert records["truncated.png"].error.startswith("Cannot read image:")
    assert records["garbage.png"].content_hash is not None and records["garbage.png"].phash is None
    assert records["a.png"].error is None


def test_decompression_bomb_is_reported_not_decoded(dataset: Path) -> None:
    (dataset / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    save_image(dataset / "big.png", size=(200, 100))
    result = scan_folder(dataset, known={}, max_pixels=10_000)
    records = {r.relpath: r for r in result.added}
    assert "too large" in records["bomb.png"].error
    big = records["big.png"]
    assert big.error == "Image too large to process: 200×100 pixels (limit 10,000)"
    assert (big.width, big.height, big.phash) == (200, 100, None)


def test_symlinks_leaving_root_are_skipped(dataset: Path, tmp_path: Path) -> None:
    save_image(tmp_path / "outside" / "secret.png")
    os.symlink(tmp_path / "outside" / "secret.png", dataset / "leak.png")
    os.symlink(tmp_path / "outside", dataset / "leakdir")
    os.symlink(dataset / "sub", dataset / "loop")  # inside the root: scanned under its real name
    os.symlink(dataset, dataset / "sub" / "back")  # a loop back to the root
    result = scan_folder(dataset, known={})
    assert sorted(r.relpath for r in result.added) == ["a.png", "no_caption.webp", "sub/b.jpg"]
    assert sorted(rel for rel, _ in result.skipped) == ["leak.png", "leakdir"]


def test_shared_caption_is_flagged(dataset: Path) -> None:
    save_image(dataset / "a.jpg")
    records = {r.relpath: r for r in scan_folder(dataset, known={}).added}
    assert records["a.jpg"].caption_relpath == records["a.png"].caption_relpath == "a.txt"
    assert "also the caption of a.jpg" in records["a.png"].pairing_note
    assert records["a.png"].caption_warning is None  # a pairing note is not an encoding problem


def test_uppercase_extensions_and_threads(dataset: Path) -> None:
    save_image(dataset / "UP.PNG")
    (dataset / "UP.TXT").write_text("upper")
    records = {r.relpath: r for r in scan_folder(dataset, known={}, workers=3).added}
    assert records["UP.PNG"].caption_text == "upper"
    assert len(records) == 4


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(ScanError):
        scan_folder(tmp_path / "gone", known={"a.png": (1, 1)})


def test_unreadable_subfolder_does_not_count_as_removed(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_from(scan_folder(dataset, known={}).added)
    real_scandir = os.scandir

    def failing_scandir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", failing_scandir)
    result = scan_folder(dataset, known=known)
    assert result.removed == []
    assert "sub/b.jpg" in result.unchanged
    assert result.skipped == [("sub", "Cannot read folder: Permission denied")]


def test_caption_symlinked_out_of_the_root_is_never_read(dataset: Path, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("alice's private caption")
    (dataset / "a.txt").unlink()
    os.symlink(secret, dataset / "a.txt")
    (dataset / "inside.txt").write_text("tok, shared inside")
    save_image(dataset / "c.png")
    os.symlink(dataset / "inside.txt", dataset / "c.txt")  # a link inside the root is fine
    result = scan_folder(dataset, known={})
    records = {r.relpath: r for r in result.added}
    assert records["a.png"].caption_text is None and records["a.png"].caption_relpath is None
    assert "a.txt" in dict(result.skipped)
    assert records["c.png"].caption_text == "tok, shared inside"
    assert all("private" not in (r.caption_text or "") for r in result.added)


def test_caption_over_the_size_limit_is_skipped_with_a_reason(dataset: Path) -> None:
    (dataset / "a.txt").write_bytes(b"tag, " * 20_000)  # 100 KB
    result = scan_folder(dataset, known={})
    a = {r.relpath: r for r in result.added}["a.png"]
    assert a.caption_text is None and a.caption_relpath == "a.txt"
    assert "limited to 64 KiB" in a.caption_warning
    assert dict(result.skipped)["a.txt"] == a.caption_warning
    # A rescan says so again rather than treating it as unchanged silently.
    again = scan_folder(dataset, known={r.relpath: (r.size, r.mtime_ns, r.caption_version) for r in result.added})
    assert "a.txt" in dict(again.skipped)


def test_fifo_named_like_a_caption_does_not_block_the_scan(dataset: Path) -> None:
    (dataset / "a.txt").unlink()
    os.mkfifo(dataset / "a.txt")
    a = {r.relpath: r for r in scan_folder(dataset, known={}).added}["a.png"]
    assert a.caption_text is None and a.caption_relpath is None


def test_errors_name_files_relative_to_the_dataset(dataset: Path) -> None:
    (dataset / "sub" / "garbage.png").write_bytes(b"this is not a png")
    record = {r.relpath: r for r in scan_folder(dataset, known={}).added}["sub/garbage.png"]
    assert "sub/garbage.png" in record.error
    assert str(dataset) not in record.error and os.path.realpath(dataset) not in record.error


@pytest.mark.parametrize("name", ["with space", "naïve ünïcode 字", "new\nline", "-leading-dash", "--", "quote'\"s"])
def test_any_file_name_is_listed_with_its_caption(dataset: Path, name: str) -> None:
    save_image(dataset / f"{name}.png")
    (dataset / f"{name}.txt").write_text("tok, odd name")
    records = {r.relpath: r for r in scan_folder(dataset, known={}).added}
    assert records[f"{name}.png"].caption_text == "tok, odd name"
    assert records[f"{name}.png"].caption_relpath == f"{name}.txt"


def test_pairing_notes_say_which_file_is_used(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    save_image(root / "two.png")
    (root / "two.txt").write_text("from txt")
    (root / "two.caption").write_text("from caption")
    save_image(root / "Case.png")
    (root / "case.txt").write_text("lower-case caption")
    save_image(root / "ext.png")
    (root / "ext.TXT").write_text("upper-case extension")
    save_image(root / "plain.png")
    (root / "plain.txt").write_text("plain")
    records = {r.relpath: r for r in scan_folder(root, known={}).added}
    two = records["two.png"]
    assert (two.caption_relpath, two.caption_text) == ("two.txt", "from txt")
    assert two.pairing_note == "two.caption is also there; Tessera and trainers use two.txt"
    assert records["Case.png"].caption_text == "lower-case caption"
    assert "case.txt matches Case.png only by letter case" in records["Case.png"].pairing_note
    assert "ext.TXT matches ext.png only by letter case" in records["ext.png"].pairing_note
    assert records["plain.png"].pairing_note is None
    assert all(r.caption_warning is None for r in records.values())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_upright_size(tmp_path: Path, orientation: int) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (768, 512), "red").save(root / "photo.jpg", exif=exif)
    record = scan_folder(root, known={}).added[0]
    assert record.orientation == orientation
    expected = (512, 768) if orientation in (5, 6, 7, 8) else (768, 512)
    assert (record.width, record.height) == expected


def test_alpha_is_measured(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    Image.new("RGBA", (10, 10), (255, 0, 0, 255)).save(root / "opaque.png")
    half = Image.new("RGBA", (10, 10), (255, 0, 0, 255))
    half.paste((0, 0, 0, 0), (0, 0, 10, 5))
    half.save(root / "half.png")
    records = {r.relpath: r for r in scan_folder(root, known={}).added}
    assert records["opaque.png"].alpha == 0.0
    assert records["half.png"].alpha == 0.5


def test_uncertain_short_captions_are_settled_by_the_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    texts = ["mychar, девушка, улыбка", "mychar, длинные волосы, голубые глаза", "mychar, школьная форма, улица, ночь"]
    for n, text in enumerate(texts):
        save_image(root / f"{n}.png")
        (root / f"{n}.txt").write_bytes(text.encode("cp1251"))
    result = scan_folder(root, known={})
    assert result.caption_encoding == "cp1251"
    assert sorted(r.caption_text for r in result.added) == sorted(texts)
    assert all(r.caption_problems == ("not_utf8",) for r in result.added)
