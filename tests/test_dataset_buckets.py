"""Buckets as kohya and ai-toolkit compute them, the histogram, and crops written as new files."""
from pathlib import Path

import pytest
from PIL import Image

from app import imaging
from app.datasets import buckets


def test_kohya_sdxl_bucket_list_matches_its_rule() -> None:
    sizes = buckets.kohya_resolutions(1024, 256, 2048, 64)
    assert (1024, 1024) in sizes and (1216, 832) in sizes and (832, 1216) in sizes
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in sizes)
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(("size", "trainer", "bucket", "scaled"), [
    ((768, 512), "kohya-sdxl", (1216, 832), (1248, 832)),
    ((512, 768), "kohya-sdxl", (832, 1216), (832, 1248)),
    ((1024, 1024), "kohya-sdxl", (1024, 1024), (1024, 1024)),
    ((1920, 1080), "kohya-sdxl", (1344, 768), (1365, 768)),
    ((768, 512), "kohya-sd15", (640, 384), (640, 427)),
    ((1920, 1080), "ai-toolkit-1024", (1344, 768), (1365, 768)),
    ((256, 256), "ai-toolkit-1024", (256, 256), (256, 256)),  # ai-toolkit never upscales
])
def test_bucket_for(size, trainer, bucket, scaled) -> None:
    result = buckets.bucket_for(*size, trainer)
    assert (result.width, result.height) == bucket and result.scaled == scaled
    left, top, right, bottom = result.crop
    assert 0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]


def test_histogram_counts_images_per_bucket() -> None:
    sizes = [(768, 512)] * 3 + [(1024, 1024), (512, 768)]
    assert buckets.histogram(sizes, "kohya-sdxl") == [("1216×832", 3), ("1024×1024", 1), ("832×1216", 1)]


def test_focus_crop_follows_the_focus_and_stays_inside() -> None:
    assert buckets.focus_crop(768, 512, (1024, 1024)) == (128, 0, 640, 512)  # centred
    assert buckets.focus_crop(768, 512, (1024, 1024), (600, 0, 700, 100)) == (256, 0, 768, 512)  # moved, not shrunk
    assert buckets.focus_crop(768, 512, (1024, 1024), (0, 0, 50, 50)) == (0, 0, 512, 512)


def test_crop_writes_a_new_file_and_never_the_original(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    stored = Image.new("RGB", (768, 512), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = 6
    stored.save(source, quality=95, exif=exif)
    before = source.read_bytes()
    first = buckets.crop_to_new_file(source, (0, 0, 512, 512), size=(256, 256))
    second = buckets.crop_to_new_file(source, (0, 0, 512, 512), size=(256, 256))
    assert source.read_bytes() == before
    assert first.name == "photo-crop-256x256.jpg" and second.name == "photo-crop-256x256-2.jpg"
    with Image.open(first) as crop:
        assert crop.size == (256, 256)
        # Orientation 6: the stored top-left corner is the upright top-right corner.
        assert crop.getpixel((250, 5))[0] > 200 and crop.getpixel((5, 5))[2] > 200
    with pytest.raises(ValueError, match="outside"):
        buckets.crop_to_new_file(source, (0, 0, 600, 600))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo-crop-256x256-2.jpg", "photo-crop-256x256.jpg", "photo.jpg"]
