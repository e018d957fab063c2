"""Pictures imported onto the canvas, read in bands of rows so a request's memory stays bounded.

libvips (pyvips) decodes PNG, JPEG and WebP sequentially and resizes as it reads: a 64-megapixel
picture goes through a few lines at a time, never whole in memory (Pillow would decode all of it,
~256 MB as RGBA, and copy it again to convert and resize). ``TileStore.write_bands`` pulls the rows
one tile row at a time, top to bottom.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyvips  # libvips: streaming decode and resize with bounded memory (pyvips-binary ships the library)

FITS = ("cover", "contain", "none")
MAX_IMPORT_PIXELS = 64_000_000

# libvips' operation cache keeps recent images alive; an import is read once.
pyvips.cache_set_max(0)


class ImportRefused(Exception):
    """A picture that cannot be imported; ``str(error)`` says why."""


RowReader = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class ImportSource:
    """The picture as it goes on the canvas: ``width``×``height`` at (dx, dy) from the frame's corner.

    ``bands()`` opens it (again, if a write must be planned again) and returns ``rows(top, bottom)``,
    which gives rows top..bottom (end exclusive) as a (rows, width, 4) RGBA uint8 array; rows must be
    asked for in order, top to bottom.
    """

    width: int
    height: int
    dx: int
    dy: int
    bands: Callable[[], RowReader]


def open_import(data: bytes, frame_size: tuple[int, int], fit: str) -> ImportSource:
    """How a picture (its file's bytes) goes into a frame of ``frame_size``.

    ``fit``: "cover" scales it to fill the frame and crops what overflows (centred); "contain"
    scales it down to fit inside the frame, centred; "none" keeps its size, at the frame's corner.
    EXIF orientation is applied. Raises ImportRefused for an unreadable or too large picture.
    """
    if fit not in FITS:
        raise ValueError(f"Unknown fit {fit!r}")
    header = _open(data)
    width, height = _oriented_size(header)
    if width * height > MAX_IMPORT_PIXELS:
        raise ImportRefused(f"The image is {width}×{height}; import at most {MAX_IMPORT_PIXELS // 1_000_000} megapixels.")
    frame_width, frame_height = frame_size
    if fit == "none":
        scale = 1.0
    elif fit == "contain":
        scale = min(frame_width / width, frame_height / height, 1.0)
    else:
        scale = max(frame_width / width, frame_height / height)
    scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
    if fit == "cover":
        out_size = (min(scaled[0], frame_width), min(scaled[1], frame_height))
        offset = (0, 0)
    else:
        out_size = scaled
        offset = ((frame_width - scaled[0]) // 2, (frame_height - scaled[1]) // 2) if fit == "contain" else (0, 0)

    def bands() -> RowReader:
        image = _rgba(_open(data, oriented=True))
        if scaled != (image.width, image.height):
            image = image.resize(scaled[0] / image.width, vscale=scaled[1] / image.height, kernel="lanczos3")
            # libvips may round a side one pixel off: make it exactly the planned size.
            image = image.embed(0, 0, scaled[0], scaled[1], extend="copy")
        if out_size != scaled:
            image = image.crop((scaled[0] - out_size[0]) // 2, (scaled[1] - out_size[1]) // 2, *out_size)
        region = pyvips.Region.new(image)

        def rows(top: int, bottom: int) -> np.ndarray:
            data = region.fetch(0, top, out_size[0], bottom - top)
            return np.frombuffer(data, np.uint8).reshape(bottom - top, out_size[0], 4)

        return rows

    return ImportSource(out_size[0], out_size[1], offset[0], offset[1], bands)


def _open(data: bytes, oriented: bool = False) -> pyvips.Image:
    try:
        image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error:
        raise ImportRefused("The file is not a picture this server can read (PNG, JPEG or WebP).") from None
    if oriented and _orientation(image) != 1:
        # Turning needs the whole picture at hand: libvips keeps it on disk, not in memory, when large.
        image = pyvips.Image.new_from_buffer(data, "", access="random").autorot()
    return image


def _orientation(image: pyvips.Image) -> int:
    try:
        return int(image.get("orientation")) if image.get_typeof("orientation") else 1
    except (pyvips.Error, ValueError):
        return 1


def _oriented_size(image: pyvips.Image) -> tuple[int, int]:
    return (image.height, image.width) if _orientation(image) in (5, 6, 7, 8) else (image.width, image.height)


def _rgba(image: pyvips.Image) -> pyvips.Image:
    """8-bit sRGB with alpha, whatever the file held (grey, palette, 16-bit, CMYK)."""
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.bands in (1, 2):  # grey, grey + alpha
        image = image.colourspace("srgb")
    if not image.hasalpha():
        image = image.bandjoin(255)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image.extract_band(0, n=4)
