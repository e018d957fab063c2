"""Decoding any image Pillow opens into the 8-bit, upright pixels everything else works on.

One conversion for every place an image is looked at (dataset thumbnails, fingerprints,
captioning uploads, training exports, canvas imports), so an image reads the same everywhere:

- EXIF orientation 2–8 is applied (phones store portraits sideways with a tag; trainers such as
  kohya ignore the tag, so the pixels must be turned before they leave Tessera).
- High bit depths are scaled, not clipped: Pillow's own `convert("L")` of an `I;16` image clips
  every value above 255 to white. 16-bit greys become `value >> 8`; 32-bit `I` is taken as 16-bit
  data (what 16-bit PNG and TIFF decode to); `F` is taken as 0–1 when its maximum is at most 1,
  as 0–255 when at most 255, else as 16-bit (`value >> 8` like the others).
- Transparency (`RGBA`, `LA`, `PA`, `P` or `L`/`RGB` with a transparent colour) is kept as `RGBA`
  or flattened onto a chosen background colour; `CMYK`, `YCbCr`, `LAB`, `HSV`, `1` become `RGB`/`L`.

Shared layer: plain functions on PIL images, no Flask.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112
WHITE = (255, 255, 255)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1–8) of an opened image; 1 when absent or malformed."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block must not make the image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as the image is meant to be seen: swapped for orientations 5–8.

    Reads only the header, so it is cheap on an image that is never decoded.
    """
    width, height = image.size
    return (height, width) if orientation(image) in (5, 6, 7, 8) else (width, height)


def has_transparency(image: Image.Image) -> bool:
    """Whether the mode can hold transparency (an alpha band or a transparent colour)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def _scaled_grey(image: Image.Image) -> Image.Image:
    """An `I;16*`, `I` or `F` image as 8-bit `L`, scaled rather than clipped (see module doc)."""
    pixels = np.asarray(image)
    if image.mode == "F":
        peak = float(np.nanmax(pixels)) if pixels.size else 0.0
        if peak <= 255.0:
            grey = np.clip(np.nan_to_num(pixels * (255.0 if peak <= 1.0 else 1.0)), 0, 255).round()
        else:
            grey = np.clip(np.nan_to_num(pixels), 0, 65535) // 256
    else:
        grey = np.clip(pixels.astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(grey.astype(np.uint8), "L")


def to_8bit(image: Image.Image, *, keep_alpha: bool = True, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """`image` as 8-bit `RGB`, `RGBA` (only with `keep_alpha` and transparency) or `L`.

    Without `keep_alpha`, transparent pixels are flattened onto `background` (an RGB triple).
    Orientation is not touched: see `prepare`.
    """
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _scaled_grey(image)
    if mode == "1":
        return image.convert("L")
    if has_transparency(image):
        rgba = image.convert("RGBA")
        if keep_alpha:
            return rgba
        return flatten(rgba, background)
    if mode in ("RGB", "L"):
        return image
    # CMYK, YCbCr, LAB, HSV, RGBX, P without transparency: Pillow's conversions are right for these.
    return image.convert("L" if mode in ("P",) and _is_grey_palette(image) else "RGB")


def _is_grey_palette(image: Image.Image) -> bool:
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


def flatten(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """An `RGBA` image composited onto an opaque `background` colour, as `RGB`."""
    base = Image.new("RGBA", image.size, (*background, 255))
    base.alpha_composite(image if image.mode == "RGBA" else image.convert("RGBA"))
    return base.convert("RGB")


def apply_orientation(image: Image.Image, value: int) -> Image.Image:
    """Turn/flip pixels as EXIF orientation `value` asks (1 returns the image itself)."""
    method = _TRANSPOSE.get(value)
    return image.transpose(method) if method is not None else image


def prepare(
    image: Image.Image,
    *,
    keep_alpha: bool = True,
    background: tuple[int, int, int] = WHITE,
    rgb: bool = False,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """The one conversion: upright, 8-bit, alpha kept or flattened; decodes the image.

    `rgb` turns greys into `RGB` (JPEG uploads, canvas tiles); `draft` lets a JPEG decode at
    1/2–1/8 scale when only that many pixels (width, height) are needed. The result is a new
    image (or `image` itself when nothing had to change) without the EXIF orientation.
    """
    turn = orientation(image)
    if draft is not None and image.format == "JPEG":
        image.draft(image.mode if image.mode in ("RGB", "L") else None, draft)
    out = to_8bit(image, keep_alpha=keep_alpha, background=background)
    if rgb and out.mode == "L":
        out = out.convert("RGB")
    return apply_orientation(out, turn)


def load(path: str | Path, **options) -> Image.Image:
    """Open and `prepare` an image file (options as for `prepare`); the file is closed after."""
    with Image.open(path) as image:
        out = prepare(image, **options)
        out.load()
        return out if out is not image else out.copy()


def alpha_coverage(image: Image.Image) -> float:
    """Share of pixels (0–1) that are not fully opaque; 0 for images without transparency."""
    if not has_transparency(image):
        return 0.0
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    return float(np.count_nonzero(alpha < 255)) / max(alpha.size, 1)



_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def open_problem(exc: BaseException) -> str:
    """What went wrong opening an image, for the user: Pillow's DecompressionBombError ("Image size
    (400000000 pixels) exceeds limit of 100000000.0 pixels, could be decompression bomb DOS attack")
    becomes "too large to open: 400 megapixels; Tessera opens up to 100 (TESSERA_MAX_IMAGE_PIXELS)";
    anything else is its own message. (Pillow refuses above twice Image.MAX_IMAGE_PIXELS, which
    create_app sets to half the configured limit.)"""
    if not isinstance(exc, Image.DecompressionBombError):
        return str(exc)
    found = _BOMB_PIXELS.search(str(exc))
    size = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "too many pixels"
    limit = (Image.MAX_IMAGE_PIXELS or 0) * 2
    return (f"too large to open: {size}; Tessera opens images up to {limit / 1e6:,.0f} megapixels "
            "(TESSERA_MAX_IMAGE_PIXELS)")
