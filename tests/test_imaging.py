"""One decoding for every mode and orientation: thumbnails, hashes, captioning, export and canvas
import all see the same upright 8-bit pixels."""
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from app import imaging
from app.datasets.export import kohya_metadata_json, write_training_zip
from app.datasets.imagehash import hamming, perceptual_hash
from app.datasets.thumbnails import make_thumbnail


def checkerboard(low: int = 20000, high: int = 60000, side: int = 512, cell: int = 64) -> Image.Image:
    ys, xs = np.indices((side, side))
    values = np.where(((ys // cell) + (xs // cell)) % 2 == 0, low, high).astype(np.uint16)
    return Image.fromarray(values)  # mode I;16


def grey_levels(image: Image.Image) -> set[int]:
    return set(np.asarray(image.convert("L")).ravel().tolist())


def test_sixteen_bit_checkerboard_is_scaled_not_clipped() -> None:
    board = checkerboard()
    assert board.mode == "I;16"
    assert board.convert("L").getextrema() == (255, 255)  # what Pillow alone does: all white
    assert grey_levels(imaging.prepare(board)) == {20000 >> 8, 60000 >> 8} == {78, 234}


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I", "F"])
def test_every_high_bit_depth_mode_gives_value_shifted_by_8(mode: str) -> None:
    values = np.asarray(checkerboard())
    if mode == "I":
        image = Image.fromarray(values.astype(np.int32))
    elif mode == "F":
        image = Image.fromarray(values.astype(np.float32))
    else:
        dtype = ">u2" if mode == "I;16B" else "<u2"
        image = Image.frombytes(mode, (512, 512), values.astype(dtype).tobytes())
    assert image.mode == mode
    assert grey_levels(imaging.prepare(image)) == {78, 234}


def test_float_images_in_unit_range_are_scaled_to_255() -> None:
    image = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32))
    assert grey_levels(imaging.prepare(image)) == {128}


def test_transparency_modes_keep_or_flatten_alpha() -> None:
    la = Image.new("LA", (4, 4), (200, 0))
    assert imaging.prepare(la).mode == "RGBA"
    assert imaging.prepare(la, keep_alpha=False, background=(0, 0, 255)).getpixel((0, 0)) == (0, 0, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([10, 20, 30] * 256)
    palette.info["transparency"] = 0
    assert imaging.prepare(palette).getpixel((0, 0))[3] == 0
    assert imaging.prepare(palette, keep_alpha=False).getpixel((0, 0)) == (255, 255, 255)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    flat = imaging.prepare(rgba, keep_alpha=False, background=(0, 0, 0))
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (128, 0, 0)
    assert imaging.alpha_coverage(rgba) == 1.0 and imaging.alpha_coverage(Image.new("RGB", (2, 2))) == 0.0


def test_cmyk_and_bilevel_become_rgb_and_l() -> None:
    cmyk = imaging.prepare(Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
    assert cmyk.mode == "RGB" and cmyk.getpixel((0, 0)) == (255, 0, 0)
    assert imaging.prepare(Image.new("1", (4, 4), 1)).mode == "L"


def oriented_jpeg(path: Path, orientation: int) -> Image.Image:
    """A 768×512 stored JPEG with a red block in its stored top-left corner."""
    stored = Image.new("RGB", (768, 512), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 200, 100))
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = orientation
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as opened:
        return ImageOps.exif_transpose(opened)  # the reference: how a viewer shows it


@pytest.mark.parametrize("orientation", range(2, 9))
def test_export_writes_every_orientation_upright(tmp_path: Path, orientation: int) -> None:
    expected = oriented_jpeg(tmp_path / "photo.jpg", orientation)
    buffer = io.BytesIO()
    result = write_training_zip([(tmp_path / "photo.jpg", "photo", "mychar")], buffer)
    with zipfile.ZipFile(buffer) as archive, Image.open(io.BytesIO(archive.read("photo.jpg"))) as written:
        assert written.size == expected.size
        assert imaging.orientation(written) == 1
        diff = np.abs(np.asarray(written.convert("RGB"), dtype=int) - np.asarray(expected, dtype=int))
        assert diff.mean() < 3
    assert (str(tmp_path / "photo.jpg"), f"turned upright (EXIF orientation {orientation})") in result.warnings


def test_orientation_six_is_portrait_everywhere(tmp_path: Path) -> None:
    oriented_jpeg(tmp_path / "p.jpg", 6)
    with Image.open(tmp_path / "p.jpg") as image:
        assert image.size == (768, 512) and imaging.upright_size(image) == (512, 768)
    make_thumbnail(tmp_path / "p.jpg", tmp_path / "t.webp")
    with Image.open(tmp_path / "t.webp") as thumb:
        assert thumb.size[0] < thumb.size[1]


def test_thumbnail_hash_caption_upload_export_all_see_the_same_greys(tmp_path: Path) -> None:
    from app.datasets.tasks import _caption_input_image

    checkerboard().save(tmp_path / "scan.png")
    make_thumbnail(tmp_path / "scan.png", tmp_path / "thumb.webp")
    with Image.open(tmp_path / "thumb.webp") as thumb:
        levels = np.asarray(thumb.convert("L"))
    assert abs(int(np.percentile(levels, 5)) - 78) <= 3 and abs(int(np.percentile(levels, 95)) - 234) <= 3

    data, content_type = _caption_input_image(tmp_path / "scan.png")
    assert content_type == "image/jpeg"
    with Image.open(io.BytesIO(data)) as upload:
        pixels = np.asarray(upload.convert("L"))
    assert abs(int(np.percentile(pixels, 5)) - 78) <= 4 and abs(int(np.percentile(pixels, 95)) - 234) <= 4

    buffer = io.BytesIO()
    result = write_training_zip([(tmp_path / "scan.png", "scan", "grey")], buffer)
    with zipfile.ZipFile(buffer) as archive, Image.open(io.BytesIO(archive.read("scan.png"))) as exported:
        assert exported.mode == "L" and grey_levels(exported) == {78, 234}
    assert (str(tmp_path / "scan.png"), "converted from I;16 to 8-bit") in result.warnings


def test_different_sixteen_bit_images_are_not_near_duplicates(tmp_path: Path) -> None:
    board = checkerboard()
    ys, xs = np.indices((512, 512))
    gradient = Image.fromarray((20000 + xs * 80).astype(np.uint16))
    assert hamming(perceptual_hash(board), perceptual_hash(gradient)) > 12
    white = Image.new("L", (512, 512), 255)
    assert hamming(perceptual_hash(board), perceptual_hash(white)) > 12


def test_export_flattens_transparency_onto_the_chosen_colour(tmp_path: Path) -> None:
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 64, 32))
    image.save(tmp_path / "cut.png")
    buffer = io.BytesIO()
    kept = write_training_zip([(tmp_path / "cut.png", "cut", "x")], buffer)
    assert any("transparent pixels" in why for _, why in kept.warnings)
    buffer = io.BytesIO()
    flat = write_training_zip([(tmp_path / "cut.png", "cut", "x")], buffer, background=(0, 255, 0))
    with zipfile.ZipFile(buffer) as archive, Image.open(io.BytesIO(archive.read("cut.png"))) as written:
        assert written.mode == "RGB"
        assert written.getpixel((0, 0)) == (0, 255, 0) and written.getpixel((0, 63)) == (255, 0, 0)
    assert (str(tmp_path / "cut.png"), "transparency flattened onto #00ff00") in flat.warnings


def test_empty_caption_is_left_out_and_named_and_no_bom_is_written(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    items = [(tmp_path / "a.png", "a", ""), (tmp_path / "b.png", "b", "\ufeffmychar, 1girl"),
             (tmp_path / "c.png", "c", "\nmychar, 1girl\n")]
    buffer = io.BytesIO()
    result = write_training_zip(items, buffer)
    with zipfile.ZipFile(buffer) as archive:
        assert "a.txt" not in archive.namelist()
        assert archive.read("b.txt") == b"mychar, 1girl"
        assert archive.read("c.txt") == b"mychar, 1girl\n"
    assert (str(tmp_path / "a.png"), "empty caption left out (kohya refuses an empty caption file)") in result.warnings
    assert kohya_metadata_json(items) == {"b": {"tags": "mychar, 1girl"}, "c": {"tags": "mychar, 1girl"}}


def test_canvas_import_sees_the_same_greys() -> None:
    # The canvas reads imports with libvips (app/canvas/imports.py, in bands); 16-bit greys come out the same.
    from app.canvas.imports import open_import

    buffer = io.BytesIO()
    checkerboard().save(buffer, "PNG")
    source = open_import(buffer.getvalue(), (512, 512), "none")
    assert (source.dx, source.dy, source.width, source.height) == (0, 0, 512, 512)
    placed = source.bands()(0, 512)
    assert (placed[..., 3] == 255).all()
    assert grey_levels(Image.fromarray(placed)) == {78, 234}
