import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine

from app.canvas.pngstream import export_png, png_chunks, write_png_stream
from app.canvas.tiles import (
    NotFound,
    TileStore,
    canvas_history_head,
    canvas_revision,
    canvas_revision_tile,
    canvas_tile,
)
from app.metadata import metadata
from tests.canvas_helpers import decode, noise


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine, tables=[canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile])
    return engine


def test_export_decodes_to_exactly_what_read_region_shows(engine, tmp_path):
    store = TileStore(engine, tmp_path / "tiles", tile_size=64, levels=2)
    store.write_region(1, -90, -30, Image.fromarray(noise(200, 150, 1)), base_revision=None, description="a")
    smooth = np.repeat(np.repeat(noise(10, 10, 2), 8, axis=0), 8, axis=1)  # exercises every row filter
    smooth[..., 3] = 255
    store.write_region(1, 70, 100, Image.fromarray(smooth), base_revision=None, description="b")
    x0, y0, x1, y1 = store.bounds(1)
    image = decode(b"".join(export_png(store, 1, text={"parameters": "a lighthouse, seed 7"})))
    assert image.mode == "RGBA" and image.size == (x1 - x0, y1 - y0)
    assert np.array_equal(np.asarray(image), np.asarray(store.read_region(1, x0, y0, x1 - x0, y1 - y0)))
    assert image.text == {"parameters": "a lighthouse, seed 7"}

    region = (-200, -100, 333, 277)
    image = decode(b"".join(export_png(store, 1, region)))
    assert np.array_equal(np.asarray(image), np.asarray(store.read_region(1, *region)))


def test_export_of_an_empty_canvas_is_refused_before_streaming(engine, tmp_path):
    store = TileStore(engine, tmp_path / "tiles", tile_size=64, levels=2)
    with pytest.raises(NotFound, match="empty"):
        export_png(store, 1)


def test_write_png_stream_to_files_and_callables():
    pixels = noise(37, 23, 3)
    to_file = io.BytesIO()
    write_png_stream(to_file, 37, 23, [pixels[:5], pixels[5:].tobytes()], text={"Comment": "naïve ✓"})
    pieces = []
    write_png_stream(pieces.append, 37, 23, [pixels])
    for data in (to_file.getvalue(), b"".join(pieces)):
        assert np.array_equal(np.asarray(decode(data)), pixels)
    assert decode(to_file.getvalue()).text == {"Comment": "naïve ✓"}


def test_wrong_row_counts_are_errors():
    pixels = noise(8, 8, 4)
    with pytest.raises(ValueError, match="Got 7 rows"):
        b"".join(png_chunks(8, 8, [pixels[:7]]))
    with pytest.raises(ValueError, match="More rows"):
        b"".join(png_chunks(8, 4, [pixels]))


# The test decodes its own 67-megapixel export to check it, above the app's bomb warning threshold.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_export_memory_stays_far_below_the_image_size(engine, tmp_path):
    size, tile = 8192, 512
    store = TileStore(engine, tmp_path / "tiles", tile_size=tile, levels=1)
    spots = [(0, 0), (size - tile, 0), (3000, 4000), (size - tile, size - tile)]
    for i, (x, y) in enumerate(spots):
        blocks = np.repeat(np.repeat(noise(tile // 16, tile // 16, i), 16, axis=0), 16, axis=1)
        store.write_region(1, x, y, Image.fromarray(blocks), base_revision=None, description="spot")
    tracemalloc.start()
    try:
        pieces = list(export_png(store, 1, (0, 0, size, size)))  # kept: under 1 MiB compressed
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_image = size * size * 4  # 256 MiB
    assert peak < full_image / 8, f"peak {peak / 2**20:.0f} MiB"

    pixels = np.asarray(decode(b"".join(pieces)))
    for x, y in spots:
        assert np.array_equal(pixels[y:y + tile, x:x + tile], np.asarray(store.read_region(1, x, y, tile, tile)))
    assert np.count_nonzero(pixels[..., 3]) == sum(
        np.count_nonzero(np.asarray(store.read_region(1, x, y, tile, tile))[..., 3]) for x, y in spots)
