"""The pixel work of a canvas generation: masks, infill of the unknown area, model sizes, paste back.

A generation on the canvas runs: read the frame (``TileStore.read_region``) and what is known in it
(``known_mask``) → ``outpaint_mask`` (repaint what the user painted plus every pixel that is not
fully opaque) → ``infill`` the unknown pixels → ``fit_to_model`` and ``model_mask`` for the model →
results ``scale_back`` to the frame → ``paste_back`` through ``paste_mask``. Pure functions on PIL
images.

The paste mask is full strength over everything that is repainted and blends only *outside* it,
over a ring of ``BLUR_REACH`` × the mask blur: what the user painted is replaced, as in A1111's and
InvokeAI's paste-back (InvokeAI's "Canvas Paste Back" dilates the mask before blurring it), rather
than faded in around a blur centred on the painted edge.
"""
from __future__ import annotations

import io
import math
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from app.canvas.tiles import blend_rgba

# The largest mask blur (pixels) a request may ask for; "mask blur" is what A1111 and most tools
# call it (others say "feather").
MASK_BLUR_MAX = 64
# The blend ring reaches this many mask-blur radii outside the repainted area; beyond it the
# canvas is untouched (weight 0).
BLUR_REACH = 3
# A latent diffusion model decodes 8×8-pixel cells: a mask grown by one cell (at the size sent)
# makes sure every painted pixel lies in a cell the model repaints.
MODEL_MASK_GROW = 8
MID_GREY = (128, 128, 128)

# Largest image (in pixels) each infill works on at full resolution; bigger frames are filled at a
# smaller scale and the fill scaled up. The model repaints the fill anyway; what matters is colour
# and layout, and time (PatchMatch takes about 0.6 s at 256², 3.6 s at 512²).
TELEA_MAX_PIXELS = 256 * 256
PATCHMATCH_MAX_PIXELS = 256 * 256

# OpenCV's Telea drifts brighter with distance into a large hole unless its radius is 1
# (measured: a uniform colour came back up to +126 at radius 2 over 340 px, +2 at radius 1).
TELEA_RADIUS = 1

# Width of the ring of known pixels around the mask that colour matching measures.
COLOUR_RING = 16

InfillMethod = Literal["none", "telea", "patchmatch", "colour"]
Polarity = Literal["white-repaints", "black-repaints"]


class InfillUnavailable(Exception):
    """An infill method this server cannot run; ``str(error)`` is a message for the user."""


def blend_ring(repaint: Image.Image, mask_blur: int) -> Image.Image:
    """An "L" weight: 255 on every repainted pixel (``repaint`` > 0), fading to 0 outside it.

    The fade follows the distance d (pixels, Euclidean) from the nearest repainted pixel:
    1 − smoothstep(d / (BLUR_REACH·mask_blur)), so it is ≥ 254/255 next to the repainted area, has
    no visible step at either end, and is exactly 0 from BLUR_REACH·mask_blur pixels out. A mask
    blur of 0 gives the repainted area itself, hard-edged. Raises ValueError for a blur outside
    0–MASK_BLUR_MAX.
    """
    if not 0 <= mask_blur <= MASK_BLUR_MAX:
        raise ValueError(f"The mask blur must be between 0 and {MASK_BLUR_MAX} pixels, not {mask_blur}")
    inside = np.asarray(repaint.convert("L")) > 0
    if mask_blur == 0 or not inside.any():
        return Image.fromarray(np.where(inside, 255, 0).astype(np.uint8))
    reach = BLUR_REACH * mask_blur
    # Only the repainted area's box grown by the reach can get weight: measure distances there.
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    top, left = max(0, rows[0] - reach), max(0, cols[0] - reach)
    bottom, right = min(inside.shape[0], rows[-1] + reach + 1), min(inside.shape[1], cols[-1] + reach + 1)
    window = inside[top:bottom, left:right]
    distance = cv2.distanceTransform((~window).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    t = np.clip(distance / reach, 0, 1)
    weight = np.zeros(inside.shape, np.uint8)
    weight[top:bottom, left:right] = np.rint(255 * (1 - t * t * (3 - 2 * t))).astype(np.uint8)
    weight[inside] = 255
    return Image.fromarray(weight)


def outpaint_mask(painted: Image.Image, alpha: Image.Image) -> Image.Image:
    """What to repaint: the painted mask, plus every pixel of the frame that is not fully opaque.

    ``alpha`` is the frame's alpha channel. Never-painted pixels (alpha 0) are outpainted;
    half-transparent ones (the soft edge of a cut-out) are repainted too, and
    ``keep_over_result`` puts their own colour back over the new pixels, so nothing is left
    half-transparent.
    """
    _check_same_size(painted, alpha, "painted mask", "alpha")
    return Image.fromarray(np.maximum(np.asarray(painted.convert("L")), unknown_area(alpha)))


def unknown_area(alpha: Image.Image) -> np.ndarray:
    """What an outpaint treats as unknown: 255 (uint8, alpha's shape) at every pixel that is not fully
    opaque — never painted (alpha 0) or half-transparent — else 0. ``outpaint_mask`` repaints it, and
    the page stripes the same pixels (``pipeline.known_overlay``), so what it shows is what is sent."""
    return np.where(np.asarray(alpha.convert("L")) < 255, 255, 0).astype(np.uint8)


def paste_mask(repaint: Image.Image, mask_blur: int) -> Image.Image:
    """The mask a result is pasted through: ``blend_ring`` of the repaint mask.

    Every repainted pixel, painted or never painted, gets the result in full (255); the blend
    lies in the ring outside it, up to BLUR_REACH × ``mask_blur`` pixels into the kept picture.
    """
    return blend_ring(repaint, mask_blur)


def keep_mask(painted: Image.Image, alpha: Image.Image) -> Image.Image:
    """An "L" mask of the half-transparent pixels the user did not paint over (0 < alpha < 255).

    Their content is composited over the result (``keep_over_result``) instead of replaced.
    """
    _check_same_size(painted, alpha, "painted mask", "alpha")
    a = np.asarray(alpha.convert("L"))
    keep = (a > 0) & (a < 255) & (np.asarray(painted.convert("L")) == 0)
    return Image.fromarray(np.where(keep, 255, 0).astype(np.uint8))


def keep_over_result(original: Image.Image, result: Image.Image, keep: Image.Image) -> Image.Image:
    """``result`` (RGB) with the original's half-transparent pixels under ``keep`` composited over it.

    A soft cut-out edge keeps its own colour at its own opacity, now over the new background
    instead of over nothing: the pixel becomes opaque.
    """
    _check_same_size(original, result, "original", "result")
    where = np.asarray(keep.convert("L")) > 0
    out = np.array(result.convert("RGB"))
    if not where.any():
        return Image.fromarray(out)
    rgba = np.asarray(original.convert("RGBA")).astype(np.float32)
    a = rgba[..., 3:] / 255
    over = np.rint(rgba[..., :3] * a + out.astype(np.float32) * (1 - a)).clip(0, 255).astype(np.uint8)
    out[where] = over[where]
    return Image.fromarray(out)


def model_mask(mask: Image.Image, polarity: Polarity) -> Image.Image:
    """The mask as the model wants it: white = repaint (most models) or black = repaint."""
    mask = mask.convert("L")
    if polarity == "white-repaints":
        return mask.copy()
    if polarity == "black-repaints":
        return ImageOps.invert(mask)
    raise ValueError(f"Unknown mask polarity {polarity!r}")


def grown_mask(repaint: Image.Image, size: tuple[int, int], grow: int = MODEL_MASK_GROW) -> Image.Image:
    """The repaint mask as sent to a model: at ``size``, binary (0/255) and grown by ``grow`` pixels.

    Every pixel with any repaint weight is marked (a model thresholds a soft mask, which would
    shrink what was painted), the mask is scaled without losing thin strokes, then grown so the
    model's latent cells cover every painted pixel. Never smaller than what was painted.
    """
    binary = np.where(np.asarray(repaint.convert("L")) > 0, 255, 0).astype(np.uint8)
    if binary.shape[::-1] != tuple(size):
        # Area-averaging keeps any covered pixel non-zero however much the mask shrinks.
        binary = cv2.resize(binary, size, interpolation=cv2.INTER_AREA if size[0] < binary.shape[1]
                            else cv2.INTER_LINEAR)
        binary = np.where(binary > 0, 255, 0).astype(np.uint8)
    if grow > 0 and binary.any():
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        binary = cv2.dilate(binary, kernel)
    return Image.fromarray(binary)


def available_infill_methods() -> list[str]:
    """The infill methods this server can run, for the user to choose from."""
    methods = ["telea", "colour", "none"]
    if _load_patchmatch() is not None:
        methods.insert(1, "patchmatch")
    return methods


def infill(
    image: Image.Image,
    known: Image.Image,
    method: InfillMethod,
    colour: tuple[int, int, int] | None = None,
) -> Image.Image:
    """An RGB copy of ``image`` whose unknown pixels (``known`` == 0) are filled in before sending.

    Known pixels keep their colour exactly. "telea" spreads the surrounding colours inwards
    (OpenCV), "patchmatch" continues the surrounding texture, "colour" fills with ``colour`` (by
    default the mean colour of the known pixels, mid-grey if none) and "none" leaves them black,
    for the mask alone to cover. With nothing known, "telea" and "patchmatch" fill mid-grey.
    """
    _check_same_size(image, known, "image", "known mask")
    rgb = np.array(image.convert("RGB"))
    unknown = np.asarray(known.convert("L")) == 0
    if method == "none":
        rgb[unknown] = 0
    elif method == "colour":
        if colour is None:
            colour = tuple(int(round(v)) for v in rgb[~unknown].mean(axis=0)) if (~unknown).any() else MID_GREY
        rgb[unknown] = colour
    elif method in ("telea", "patchmatch"):
        if method == "patchmatch" and _load_patchmatch() is None:
            raise InfillUnavailable(
                "PatchMatch infill needs the PyPatchMatch package, which this server does not have: "
                "choose OpenCV (Telea) or colour infill."
            )
        if unknown.all():
            rgb[:] = MID_GREY
        elif unknown.any():
            fill = _fill_at_work_scale(rgb, unknown, method)
            rgb[unknown] = fill[unknown]
    else:
        raise ValueError(f"Unknown infill method {method!r}")
    return Image.fromarray(rgb)


def fit_to_model(
    width: int,
    height: int,
    multiple: int,
    max_pixels: int,
    *,
    min_pixels: int = 0,
    max_side: int | None = None,
) -> tuple[int, int]:
    """The size to send a width×height frame at: aspect kept, sides a multiple of ``multiple``.

    Frames above ``max_pixels`` (or ``max_side``) are scaled down to fit; frames below
    ``min_pixels`` are scaled up, since models draw poorly far below their native size.
    """
    if min(width, height, multiple, max_pixels) < 1:
        raise ValueError("Sizes, the multiple and the pixel budget must be positive")
    if max_side is not None and max_side < multiple:
        raise ValueError("max_side must be at least the multiple")
    area = width * height
    scale = 1.0
    if area > max_pixels:
        scale = math.sqrt(max_pixels / area)
    elif area < min_pixels:
        scale = math.sqrt(min(min_pixels, max_pixels) / area)
    if max_side is not None:
        scale = min(scale, max_side / max(width, height))

    def snapped(side: int, rounding) -> int:
        return max(multiple, int(rounding(side * scale / multiple)) * multiple)

    size = snapped(width, round), snapped(height, round)
    if size[0] * size[1] > max_pixels or (max_side is not None and max(size) > max_side):
        size = snapped(width, math.floor), snapped(height, math.floor)
    return size


def scale_back(result: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A model result resized (Lanczos) to the frame's size."""
    return result.copy() if result.size == tuple(size) else result.resize(size, Image.Resampling.LANCZOS)


def paste_back(
    original: Image.Image, result: Image.Image, mask: Image.Image, *, colour_match: bool = False
) -> Image.Image:
    """``result`` blended into ``original`` only through ``mask`` (typically from ``paste_mask``).

    Where the mask is 0 the original stays bit-identical; where 255 the pixel is the (opaque)
    result; in between a linear blend on premultiplied colour — the same blend as
    ``TileStore.write_region`` with a mask, so writing ``result`` with this mask gives these
    pixels. ``colour_match`` first moves the result's colours to match the original's around
    the mask (see ``match_colour``).
    """
    _check_same_size(original, result, "original", "result")
    _check_same_size(original, mask, "original", "mask")
    result_rgb = np.array(result.convert("RGB"))
    weight = np.asarray(mask.convert("L"), dtype=np.float32) / 255
    if colour_match:
        result_rgb = np.asarray(match_colour(Image.fromarray(result_rgb), original, mask))
    opaque = np.dstack([result_rgb, np.full(weight.shape, 255, np.uint8)])
    return Image.fromarray(blend_rgba(np.array(original.convert("RGBA")), opaque, weight))


def match_colour(result: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """``result`` (RGB) with each channel's mean and spread moved to the original's.

    Both are measured on a ring of known pixels just outside the mask, where the result should
    show what the original shows; a model's colour drift there is the seam users see. Without
    such a ring the result is returned unchanged.
    """
    result_rgb = np.asarray(result.convert("RGB"), dtype=np.float32)
    original_rgba = np.asarray(original.convert("RGBA"))
    inside = np.asarray(mask.convert("L")) > 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * COLOUR_RING + 1, 2 * COLOUR_RING + 1))
    near = cv2.dilate(inside.astype(np.uint8), kernel).astype(bool)
    ring = near & ~inside & (original_rgba[..., 3] == 255)
    if ring.sum() < 16:
        return result.convert("RGB")
    matched = np.empty_like(result_rgb)
    for channel in range(3):
        target = original_rgba[..., channel][ring].astype(np.float32)
        source = result_rgb[..., channel][ring]
        # Bounded so a flat ring (e.g. sky) cannot blow the result's contrast up or flatten it.
        gain = float(np.clip(target.std() / source.std(), 0.5, 2.0)) if source.std() > 1 else 1.0
        matched[..., channel] = (result_rgb[..., channel] - source.mean()) * gain + target.mean()
    return Image.fromarray(np.rint(matched).clip(0, 255).astype(np.uint8))


def mask_from_png(data: bytes, expected_size: tuple[int, int]) -> Image.Image:
    """An "L" mask from an uploaded PNG: its brightness over black, so white = 255.

    Painted-on-transparent masks (a browser canvas) and white-on-black masks both work. The size
    is checked before the pixels are decoded, so an oversized upload costs nothing.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        raise ValueError("The mask is not a readable image") from None
    if image.format != "PNG":
        raise ValueError("The mask must be a PNG image")
    if image.size != tuple(expected_size):
        frame_width, frame_height = expected_size
        raise ValueError(f"Mask is {image.width}×{image.height}, the frame is {frame_width}×{frame_height}")
    try:
        rgba = image.convert("RGBA")
    except (OSError, SyntaxError, ValueError):
        raise ValueError("The mask PNG is damaged") from None
    brightness = np.asarray(rgba.convert("L"), dtype=np.uint32)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint32)
    return Image.fromarray(((brightness * alpha + 127) // 255).astype(np.uint8))


def _fill_at_work_scale(rgb: np.ndarray, unknown: np.ndarray, method: str) -> np.ndarray:
    """Fill the unknown pixels, at a reduced scale when the frame is over the method's budget.

    Reduced, each small pixel is the mean of the known pixels under it (known if there is any),
    so unknown pixels' arbitrary colours cannot bleed into the fill.
    """
    height, width = unknown.shape
    budget = TELEA_MAX_PIXELS if method == "telea" else PATCHMATCH_MAX_PIXELS
    if width * height <= budget:
        return _fill(rgb, unknown, method)
    scale = math.sqrt(budget / (width * height))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    known_weight = (~unknown).astype(np.float32)
    weight = cv2.resize(known_weight, small_size, interpolation=cv2.INTER_AREA)
    known_colour = rgb.astype(np.float32) * known_weight[..., None]
    colour_sum = cv2.resize(known_colour, small_size, interpolation=cv2.INTER_AREA)
    small_rgb = np.rint(colour_sum / np.maximum(weight, 1e-6)[..., None]).clip(0, 255).astype(np.uint8)
    small_fill = _fill(small_rgb, weight == 0, method)
    return cv2.resize(small_fill, (width, height), interpolation=cv2.INTER_CUBIC)


def _fill(rgb: np.ndarray, unknown: np.ndarray, method: str) -> np.ndarray:
    if not unknown.any():
        return rgb
    if method == "telea":
        return cv2.inpaint(rgb, unknown.astype(np.uint8), TELEA_RADIUS, cv2.INPAINT_TELEA)
    return _load_patchmatch().inpaint(rgb, unknown.astype(np.uint8), patch_size=3)


def _load_patchmatch():
    """The PyPatchMatch module if it and its native library load, else None."""
    try:
        import patchmatch
    except ImportError:
        return None
    return patchmatch if patchmatch.patchmatch_available else None


def _check_same_size(a: Image.Image, b: Image.Image, a_name: str, b_name: str) -> None:
    if a.size != b.size:
        raise ValueError(f"The {b_name} is {b.width}×{b.height}, the {a_name} {a.width}×{a.height}")
