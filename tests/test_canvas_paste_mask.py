"""The paste mask replaces what is painted: full strength on every painted pixel, the blend outside.

Cases and right values from issue 12: a 64 px square at 224..287 in a 512² frame, a 12 px stroke,
a 16 px dot, mask blur 8/16/32, and brushes of every size from 1 to 512 px.
"""
import numpy as np
import pytest
from PIL import Image

from app.canvas import pipeline
from app.canvas.compose import BLUR_REACH, blend_ring, grown_mask, keep_over_result, paste_back, paste_mask
from app.canvas.pipeline import ModelRules, model_images, prepare_frame

FULL = 230  # "≥ 230/255 at every pixel of what was painted"


def L(array):
    return Image.fromarray(np.asarray(array, np.uint8))


def disc(size, diameter, cx=None, cy=None, samples=4):
    """A round brush dab as a browser canvas paints it: antialiased coverage of a circle."""
    cx = size / 2 if cx is None else cx
    cy = size / 2 if cy is None else cy
    offsets = (np.arange(samples) + 0.5) / samples
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    cover = np.zeros((size, size), np.float32)
    for oy in offsets:
        for ox in offsets:
            cover += ((xs + ox - cx) ** 2 + (ys + oy - cy) ** 2) <= (diameter / 2) ** 2
    return np.rint(255 * cover / samples**2).astype(np.uint8)


def distance_outside(painted):
    """Euclidean distance of every pixel to the nearest painted one (brute force over the painted set)."""
    import cv2
    return cv2.distanceTransform((painted == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def assert_replaces(painted, blur):
    weight = np.asarray(paste_mask(L(painted), blur))
    inside = painted > 0
    assert weight[inside].min() >= FULL, f"blur {blur}: a painted pixel gets {weight[inside].min()}/255"
    far = distance_outside(painted) > BLUR_REACH * blur + 0.5
    assert not weight[far].any(), f"blur {blur}: a pixel beyond {BLUR_REACH}×blur outside gets weight"
    return weight


@pytest.mark.parametrize("blur", [8, 16, 32])
def test_64px_square_is_replaced_in_full(blur):
    painted = np.zeros((512, 512), np.uint8)
    painted[224:288, 224:288] = 255
    weight = assert_replaces(painted, blur)
    assert weight[256, 224] == 255 and weight[224:288, 224:288].min() == 255
    assert weight[256, 256] == 255
    # The blend lies outside: it falls from next to 255 just outside to 0 at 3×blur out.
    row = weight[256, 224 - BLUR_REACH * blur - 2:224].astype(int)
    assert row[0] == 0 and row[-1] >= 250 and (np.diff(row) >= 0).all()
    # Pasting a result: every pixel of the square gets the new pixels in full.
    original = Image.new("RGBA", (512, 512), (10, 20, 30, 255))
    result = Image.new("RGB", (512, 512), (250, 240, 230))
    out = np.asarray(paste_back(original, result, L(weight)))
    assert (out[224:288, 224:288, :3] == (250, 240, 230)).all()
    assert (out[:224 - BLUR_REACH * blur, :, :3] == (10, 20, 30)).all()


@pytest.mark.parametrize("blur", range(0, 65, 4))
def test_12px_stroke_and_16px_dot_centres_are_replaced_for_every_blur(blur):
    stroke = np.zeros((600, 600), np.uint8)
    stroke[294:306, 100:500] = 255  # 12 px wide
    assert np.asarray(paste_mask(L(stroke), blur))[300, 300] >= FULL
    assert_replaces(stroke, blur)
    dot = disc(600, 16)
    assert np.asarray(paste_mask(L(dot), blur))[300, 300] >= FULL
    assert_replaces(dot, blur)


def test_64px_square_centre_is_255_at_blur_32():
    painted = np.zeros((512, 512), np.uint8)
    painted[224:288, 224:288] = 255
    assert np.asarray(paste_mask(L(painted), 32))[256, 256] == 255


@pytest.mark.parametrize("diameter", range(1, 513))
def test_every_brush_size_is_replaced_and_sent_whole(diameter):
    blur = (0, 4, 8, 16, 32, 64)[diameter % 6]
    size = diameter + 2 * BLUR_REACH * blur + 8
    painted = disc(size, diameter)
    assert painted.any()
    weight = assert_replaces(painted, blur)
    assert weight[size // 2, size // 2] == 255
    # The model is sent every painted pixel (grown, never shrunk), at the frame's size and scaled.
    for sent in ((size, size), (max(8, size // 3), max(8, size // 3)), (size * 2, size * 2)):
        mask = np.asarray(grown_mask(L(painted), sent))
        back = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
        assert back[painted > 0].min() == 255, f"{diameter} px brush lost at {sent}"


def test_blend_ring_rejects_a_blur_out_of_range():
    for blur in (-1, 65):
        with pytest.raises(ValueError, match="between 0 and 64"):
            blend_ring(L(np.zeros((4, 4))), blur)


def test_soft_cutout_edges_end_opaque_after_an_outpaint():
    """A cut-out with a soft (half-transparent) edge, the frame half over empty space: nothing the
    user did not paint is left half-transparent, and the cut-out's own colour stays in its edge."""
    size = 256
    region = np.zeros((size, size, 4), np.uint8)
    region[:, :128] = (200, 40, 40, 255)
    ramp = np.linspace(255, 0, 32).astype(np.uint8)  # the soft edge, fading out over 32 px
    region[:, 128:160, :3] = (200, 40, 40)
    region[:, 128:160, 3] = ramp
    region[region[..., 3] == 0] = 0
    painted = L(np.zeros((size, size)))
    prepared = prepare_frame(Image.fromarray(region), painted, "telea", 8)
    # The half-transparent edge is repainted and sent to the model whole.
    assert (np.asarray(prepared.repaint)[:, 129:] == 255).all()
    _, mask = model_images(prepared, ModelRules(8, 1024 * 1024), "white-repaints")
    assert (np.asarray(mask.resize((size, size)))[:, 129:] == 255).all()
    new_background = Image.new("RGB", (size, size), (20, 200, 240))
    result, preview = pipeline.finish_variation(Image.fromarray(region), new_background, prepared.paste, False,
                                                prepared.keep)
    out = np.asarray(preview)
    assert (out[..., 3] == 255).all(), "a pixel was left half-transparent"
    # The cut-out's edge keeps its colour at its opacity, now over the new background.
    a = ramp[8] / 255
    expected = np.rint(np.array([200, 40, 40]) * a + np.array([20, 200, 240]) * (1 - a))
    assert np.abs(out[100, 136, :3].astype(int) - expected).max() <= 1
    assert (out[:, :128 - BLUR_REACH * 8, :3] == (200, 40, 40)).all()
    assert (out[:, 160:, :3] == (20, 200, 240)).all()


def test_painting_over_a_soft_edge_replaces_it():
    region = np.zeros((64, 64, 4), np.uint8)
    region[..., :3] = 90
    region[..., 3] = 128
    painted = np.zeros((64, 64), np.uint8)
    painted[:, :32] = 255
    prepared = prepare_frame(Image.fromarray(region), L(painted), "telea", 4)
    result, preview = pipeline.finish_variation(Image.fromarray(region), Image.new("RGB", (64, 64), (255, 0, 0)),
                                                prepared.paste, False, prepared.keep)
    out = np.asarray(preview)
    assert (out[:, :32] == (255, 0, 0, 255)).all()
    assert (out[..., 3] == 255).all()
    assert np.array_equal(np.asarray(keep_over_result(Image.fromarray(region), result, L(np.zeros((64, 64))))),
                          np.asarray(result))
