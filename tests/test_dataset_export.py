import io
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.export import kohya_metadata_json, write_kohya_folder_zip, write_training_zip


@pytest.fixture
def items(tmp_path: Path) -> list[tuple[Path, str, str | None]]:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (400, 200), "red").save(tmp_path / "a.png")
    Image.new("RGB", (100, 300), "blue").save(tmp_path / "sub" / "b.jpg", quality=90)
    Image.new("RGB", (50, 50), "green").save(tmp_path / "c.webp")
    return [
        (tmp_path / "a.png", "a", "1girl, star \\(symbol\\)"),
        (tmp_path / "sub" / "b.jpg", "sub/b", "A woman standing in a field of flowers at dusk."),
        (tmp_path / "c.webp", "c", None),
    ]


def open_zip(buffer: io.BytesIO) -> zipfile.ZipFile:
    buffer.seek(0)
    return zipfile.ZipFile(buffer)


def test_training_zip_has_pairs_at_root(items, tmp_path: Path) -> None:
    out = tmp_path / "out.zip"
    result = write_training_zip(items, out)
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["a.png", "a.txt", "sub_b.jpg", "sub_b.txt", "c.webp"]
        assert archive.read("a.png") == (tmp_path / "a.png").read_bytes()  # copied byte for byte
        assert archive.read("a.txt").decode() == "1girl, star \\(symbol\\)"
        assert archive.getinfo("a.png").compress_type == zipfile.ZIP_STORED
    assert result.captions == 2 and result.reencoded == 0
    assert result.images[1] == (str(tmp_path / "sub" / "b.jpg"), "sub_b.jpg")


def test_trigger_and_strip_escapes(items) -> None:
    buffer = io.BytesIO()
    write_training_zip(items, buffer, trigger="tok", strip_escapes=True)
    with open_zip(buffer) as archive:
        assert archive.read("a.txt").decode() == "tok, 1girl, star (symbol)"
        assert archive.read("sub_b.txt").decode() == "tok, A woman standing in a field of flowers at dusk."


def test_sequential_names(items) -> None:
    buffer = io.BytesIO()
    progress = []
    write_training_zip(items, buffer, rename_sequential=True, on_progress=lambda d, t: progress.append((d, t)))
    with open_zip(buffer) as archive:
        assert archive.namelist() == ["0001.png", "0001.txt", "0002.jpg", "0002.txt", "0003.webp"]
    assert progress == [(1, 3), (2, 3), (3, 3)]


def test_resize_keeps_aspect_and_format(items) -> None:
    buffer = io.BytesIO()
    result = write_training_zip(items, buffer, max_side=200)
    with open_zip(buffer) as archive:
        a = Image.open(io.BytesIO(archive.read("a.png")))
        b = Image.open(io.BytesIO(archive.read("sub_b.jpg")))
        c = Image.open(io.BytesIO(archive.read("c.webp")))
        assert (a.format, a.size) == ("PNG", (200, 100))
        assert (b.format, b.size) == ("JPEG", (67, 200))
        assert (c.format, c.size) == ("WEBP", (50, 50))  # small enough: untouched
    assert result.reencoded == 2


def test_png_jpeg_only_converts_webp(items) -> None:
    buffer = io.BytesIO()
    write_training_zip(items, buffer, png_jpeg_only=True)
    with open_zip(buffer) as archive:
        assert "c.png" in archive.namelist() and "c.webp" not in archive.namelist()
        assert Image.open(io.BytesIO(archive.read("c.png"))).format == "PNG"


def test_colliding_stems_get_suffixes(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    buffer = io.BytesIO()
    write_training_zip([(tmp_path / "x.png", "x", "one"), (tmp_path / "x.jpg", "X", "two")], buffer)
    with open_zip(buffer) as archive:
        assert archive.namelist() == ["x.png", "x.txt", "X_2.jpg", "X_2.txt"]
        assert archive.read("X_2.txt") == b"two"


def test_kohya_folder_layout(items) -> None:
    buffer = io.BytesIO()
    write_kohya_folder_zip(items, buffer, 10, "tok", "woman")
    with open_zip(buffer) as archive:
        names = archive.namelist()
        assert all(n.startswith("img/10_tok woman/") for n in names)
        assert "img/10_tok woman/a.txt" in names
        assert archive.read("img/10_tok woman/a.txt").decode() == "tok, 1girl, star \\(symbol\\)"


def test_kohya_folder_refuses_bad_names(items) -> None:
    with pytest.raises(ValueError):
        write_kohya_folder_zip(items, io.BytesIO(), 0, "tok", "woman")
    with pytest.raises(ValueError):
        write_kohya_folder_zip(items, io.BytesIO(), 5, "../tok", "woman")


def test_kohya_metadata_json(items) -> None:
    metadata = kohya_metadata_json(items, trigger="tok")
    assert metadata == {
        "a": {"tags": "tok, 1girl, star \\(symbol\\)"},
        "sub/b": {"caption": "tok, A woman standing in a field of flowers at dusk."},
    }
    assert json.loads(json.dumps(metadata)) == metadata


def test_non_seekable_output(items) -> None:
    class WriteOnly(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, chunk) -> int:
            self.data += chunk
            return len(chunk)

    sink = WriteOnly()
    write_training_zip(items, sink)
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as archive:
        assert archive.read("a.txt").decode() == "1girl, star \\(symbol\\)"


def test_missing_or_corrupt_source_is_skipped_not_fatal(items, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    items = items + [(tmp_path / "broken.png", "broken", "x"), (tmp_path / "gone.png", "gone", "y")]
    buffer = io.BytesIO()
    result = write_training_zip(items, buffer, max_side=100)
    assert [path for path, _ in result.skipped] == [str(tmp_path / "broken.png"), str(tmp_path / "gone.png")]
    with open_zip(buffer) as archive:
        assert not any(n.startswith(("broken", "gone")) for n in archive.namelist())
        assert "a.png" in archive.namelist()
