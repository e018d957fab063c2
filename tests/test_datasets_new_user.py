"""What a new user's awkward files and first steps met (issue 11's "break it as a new user would"):
an image whose header claims 20,000×20,000 pixels is named in words, not Pillow's "decompression bomb
DOS attack"; a filter that matches nothing says how to get back; an unreadable image offers no crop."""
import struct
import zlib

import pytest
from PIL import Image

from app import imaging
from tests.datasets_helpers import image_named, make_folder, open_dataset


def png_header(width: int, height: int) -> bytes:
    """A PNG that only claims its size: an IHDR of width×height and a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))


def test_a_huge_image_is_named_in_words(client, run_jobs, app):
    folder = make_folder(app, captions={"ok.png": "tok"})
    (folder / "huge scan.png").write_bytes(png_header(20_000, 20_000))
    dataset = open_dataset(client, run_jobs, folder)
    limit = app.config["MAX_IMAGE_PIXELS"] / 1e6
    huge = image_named(dataset, "huge scan.png")
    assert huge.error == (f"Image too large to open: 400 megapixels; Tessera opens images up to {limit:,.0f} "
                          "megapixels (TESSERA_MAX_IMAGE_PIXELS)")
    page = client.get(f"/datasets/{dataset.id}/images/{huge.id}").get_data(as_text=True)
    assert "400 megapixels" in page and "DOS attack" not in page
    assert "Crop to a bucket…" not in page  # nothing to crop in an image that cannot be opened
    ok = image_named(dataset, "ok.png")
    assert "Crop to a bucket…" in client.get(f"/datasets/{dataset.id}/images/{ok.id}").get_data(as_text=True)
    # The crop tool, reached by its address anyway, says the same.
    crop = client.get(f"/datasets/{dataset.id}/images/{huge.id}/crop/auto?bucket=1024x1024")
    assert crop.status_code == 422 and "DOS attack" not in crop.get_json()["error"]


def test_open_problem_words_only_the_pixel_limit():
    with pytest.raises(Image.DecompressionBombError) as caught:
        Image._decompression_bomb_check((  # Pillow's own check, as Image.open runs it
            Image.MAX_IMAGE_PIXELS * 3, 1))
    text = imaging.open_problem(caught.value)
    assert text.startswith("too large to open: ") and "megapixels" in text and "DOS" not in text
    assert imaging.open_problem(OSError("Truncated File Read")) == "Truncated File Read"


def test_a_filter_that_matches_nothing_offers_the_way_back(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    page = client.get(f"/datasets/{dataset.id}?q=nosuchtag").get_data(as_text=True)
    assert "No image matches the filter <code>nosuchtag</code>." in page
    assert f'href="/datasets/{dataset.id}?q=" id="clear-empty-filter">Clear the filter</a> to see all 4 images' in page
