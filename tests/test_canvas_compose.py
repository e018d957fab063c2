import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import create_engine

from app.canvas import compose
from app.canvas.compose import (
    InfillUnavailable,
    available_infill_methods,
    fit_to_model,
    infill,
    mask_from_png,
    match_colour,
    model_mask,
    outpaint_mask,
    paste_back,
    paste_mask,
    scale_back,
)
from app.canvas.tiles import TileStore, canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile
from app.metadata import metadata
from tests.canvas_helpers import noise


def L(array):
    return Image.fromarray(np.asarray(array, np.uint8))


def square_mask(size, start, stop, value=255):
    mask = np.zeros((size, size), np.uint8)
    mask[start:stop, start:stop] = value
    return mask


def half_known(size):
    known = np.zeros((size, size), np.uint8)
    known[:, : size // 2] = 255
    return known


def test_paste_mask_blends_only_outside_the_repainted_area():
    mask = square_mask(128, 32, 96)
    assert np.array_equal(np.asarray(paste_mask(L(mask), 0)), mask)
    blended = np.asarray(paste_mask(L(mask), 4))
    assert (blended[32:96, 32:96] == 255).all() and (blended[:32 - 12] == 0).all()
    row = blended[64, 16:33].astype(int)
    assert 0 < row[8] < 255 and (np.diff(row) >= 0).all() and row[0] == 0 and row[-1] == 255


def test_outpaint_mask_adds_every_pixel_not_fully_opaque():
    painted = np.zeros((8, 8), np.uint8)
    painted[2, 1] = 255
    painted[3, 2] = 100
    alpha = half_known(8)
    alpha[5, 1] = 128  # half-transparent: repainted too
    repaint = np.asarray(outpaint_mask(L(painted), L(alpha)))
    expected = painted.copy()
    expected[:, 4:] = 255
    expected[5, 1] = 255
    assert np.array_equal(repaint, expected)


def test_paste_mask_covers_the_unknown_area_in_full_and_blends_into_the_picture():
    repaint = np.asarray(outpaint_mask(L(np.zeros((64, 64))), L(half_known(64))))
    mask = np.asarray(paste_mask(L(repaint), 8))
    assert (mask[:, 32:] == 255).all()
    assert 0 < mask[10, 20] < 255 and mask[10, 0] == 0


def test_model_mask_polarity():
    mask = square_mask(16, 4, 8, 200)
    assert np.array_equal(np.asarray(model_mask(L(mask), "white-repaints")), mask)
    assert np.array_equal(np.asarray(model_mask(L(mask), "black-repaints")), 255 - mask)
    with pytest.raises(ValueError):
        model_mask(L(mask), "grey-repaints")


@pytest.mark.parametrize("size", [96, 1024])  # 1024² is filled at a reduced scale
@pytest.mark.parametrize("method", ["telea", "patchmatch"])
def test_infill_continues_the_known_pixels_and_keeps_them_exact(method, size):
    if method not in available_infill_methods():
        pytest.skip("PyPatchMatch is not installed")
    red, green = (200, 30, 40), (20, 180, 60)
    image = noise(size, size, 1)  # the unknown half holds garbage
    image[:, : size // 2] = (*red, 255)
    image[: size // 4, : size // 2] = (*green, 255)
    known = L(half_known(size))
    filled = np.asarray(infill(Image.fromarray(image), known, method)).astype(int)
    assert np.array_equal(filled[:, : size // 2], image[:, : size // 2, :3])
    wiped = image.copy()
    wiped[:, size // 2:] = 0
    assert np.array_equal(np.asarray(infill(Image.fromarray(wiped), known, method)), filled), "garbage leaked in"

    def nearer(region, colour, other):
        mean = region.reshape(-1, 3).mean(axis=0)
        return np.abs(mean - colour).sum() < np.abs(mean - other).sum()

    assert nearer(filled[: size // 8, size // 2: size // 2 + size // 16], green, red)
    assert nearer(filled[size // 2:, -size // 8:], red, green)

    image[:, : size // 2] = (*red, 255)
    uniform = np.asarray(infill(Image.fromarray(image), known, method)).astype(int)
    assert np.abs(uniform - red).max() <= 2


def test_infill_colour_and_none():
    image = noise(20, 20, 2)
    image[:, :10] = (10, 20, 30, 255)
    image[0, 0] = (30, 40, 50, 255)
    known = Image.fromarray(half_known(20))
    source = Image.fromarray(image)
    mean = np.asarray(infill(source, known, "colour"))
    assert mean[5, 15].tolist() == [10, 20, 30] and mean[0, 0].tolist() == [30, 40, 50]
    chosen = np.asarray(infill(source, known, "colour", colour=(1, 2, 3)))
    assert (chosen[:, 10:] == (1, 2, 3)).all() and np.array_equal(chosen[:, :10], image[:, :10, :3])
    black = np.asarray(infill(source, known, "none"))
    assert not black[:, 10:].any() and np.array_equal(black[:, :10], image[:, :10, :3])
    nothing_known = Image.fromarray(np.zeros((20, 20), np.uint8))
    assert (np.asarray(infill(source, nothing_known, "colour")) == 128).all()
    assert (np.asarray(infill(source, nothing_known, "telea")) == 128).all()
    with pytest.raises(ValueError):
        infill(source, known, "lama")


def test_patchmatch_without_the_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(compose, "_load_patchmatch", lambda: None)
    assert "patchmatch" not in available_infill_methods()
    with pytest.raises(InfillUnavailable, match="PyPatchMatch"):
        infill(Image.new("RGBA", (8, 8)), Image.fromarray(half_known(8)), "patchmatch")


def test_fit_to_model_sizes():
    assert fit_to_model(1024, 1024, 8, 1024 * 1024) == (1024, 1024)
    assert fit_to_model(2000, 1000, 64, 1024 * 1024) == (1472, 704)
    assert fit_to_model(256, 256, 8, 1024 * 1024, min_pixels=512 * 512) == (512, 512)
    assert fit_to_model(3000, 1000, 32, 4_000_000, max_side=1440) == (1440, 480)
    assert fit_to_model(10, 3000, 64, 1024 * 1024) == (64, 3008)
    for width in range(100, 4000, 370):
        for height in range(100, 4000, 530):
            for multiple, budget in ((8, 1024 * 1024), (32, 2_000_000), (64, 4_000_000)):
                w, h = fit_to_model(width, height, multiple, budget)
                assert w % multiple == 0 and h % multiple == 0 and w * h <= budget
                if width * height > budget:
                    assert w * h > budget * 0.8
                assert abs(w / h - width / height) <= (width / height) * 2 * multiple / min(w, h)


def test_scale_back_resizes_to_the_frame():
    result = Image.fromarray(noise(64, 32, 3, channels=3))
    assert scale_back(result, (100, 50)).size == (100, 50)
    assert np.array_equal(np.asarray(scale_back(result, (64, 32))), np.asarray(result))


def test_paste_back_changes_pixels_only_through_the_mask():
    original = noise(64, 64, 4)
    original[..., 3] = 255
    original[:8, :8, 3] = 0
    original[:8, :8, :3] = 0
    result = noise(64, 64, 5, channels=3)
    mask = np.asarray(paste_mask(L(square_mask(64, 20, 44)), 2))
    out = np.asarray(paste_back(Image.fromarray(original), Image.fromarray(result), L(mask)))
    assert np.array_equal(out[mask == 0], original[mask == 0])
    assert np.array_equal(out[mask == 255][:, :3], result[mask == 255])
    assert (out[mask == 255][:, 3] == 255).all()
    edge = (mask > 0) & (mask < 255)
    low = np.minimum(original[..., :3], result)[edge]
    high = np.maximum(original[..., :3], result)[edge]
    assert edge.sum() > 100 and ((out[edge][:, :3] >= low) & (out[edge][:, :3] <= high)).all()

    flat = paste_back(Image.new("RGBA", (4, 4), (200, 0, 40, 255)), Image.new("RGB", (4, 4), (0, 100, 240)),
                      L(np.full((4, 4), 51)))
    assert np.asarray(flat)[0, 0].tolist() == [160, 20, 80, 255]


def test_paste_back_matches_what_the_tile_store_writes(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/t.db")
    metadata.create_all(engine, tables=[canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile])
    store = TileStore(engine, tmp_path / "tiles", tile_size=64, levels=1)
    original = noise(100, 80, 6)
    original[..., 3] = np.where(original[..., 3] < 60, 0, original[..., 3])
    store.write_region(1, -30, -20, Image.fromarray(original), base_revision=None, description="base")
    before = store.read_region(1, -30, -20, 100, 80)
    result = Image.fromarray(noise(100, 80, 7, channels=3))
    mask = paste_mask(L(square_mask(100, 20, 60)[:80]), 3)
    store.write_region(1, -30, -20, result.convert("RGBA"), base_revision=None, description="paste", mask=mask)
    assert np.array_equal(np.asarray(store.read_region(1, -30, -20, 100, 80)),
                          np.asarray(paste_back(before, result, mask)))


def test_colour_match_moves_the_result_to_the_surroundings():
    rng = np.random.default_rng(8)
    original = np.dstack([np.clip(rng.normal(100, 10, (96, 96, 3)), 0, 255), np.full((96, 96), 255)]).astype(np.uint8)
    shifted = np.clip(original[..., :3].astype(int) + 30, 0, 255).astype(np.uint8)
    mask = square_mask(96, 32, 64)
    inside = mask == 255
    plain = np.asarray(paste_back(Image.fromarray(original), Image.fromarray(shifted), L(mask)))
    matched = np.asarray(paste_back(Image.fromarray(original), Image.fromarray(shifted), L(mask), colour_match=True))
    assert abs(plain[inside][:, :3].mean() - 130) < 1
    assert abs(matched[inside][:, :3].mean() - 100) < 1
    assert np.array_equal(matched[~inside], original[~inside])
    everything = L(np.full((96, 96), 255))
    assert np.array_equal(np.asarray(match_colour(Image.fromarray(shifted), Image.fromarray(original), everything)),
                          shifted)


def png_bytes(image, format="PNG"):
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


def test_mask_from_png():
    painted = np.zeros((16, 16, 4), np.uint8)
    painted[4:8, 4:8] = (255, 255, 255, 255)
    painted[9, 9] = (255, 255, 255, 128)
    expected = painted[..., 3]
    assert np.array_equal(np.asarray(mask_from_png(png_bytes(Image.fromarray(painted)), (16, 16))), expected)
    white_on_black = Image.fromarray(expected).convert("RGB")
    assert np.array_equal(np.asarray(mask_from_png(png_bytes(white_on_black), (16, 16))), expected)
    with pytest.raises(ValueError, match="^Mask is 100×100, the frame is 512×512$"):
        mask_from_png(png_bytes(Image.new("L", (100, 100))), (512, 512))
    with pytest.raises(ValueError, match="must be a PNG"):
        mask_from_png(png_bytes(white_on_black, "JPEG"), (16, 16))
    with pytest.raises(ValueError, match="not a readable image"):
        mask_from_png(b"not an image", (16, 16))
