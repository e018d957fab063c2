"""Pictures imported onto the canvas, read in bands of rows so a request's memory stays bounded.

libvips (pyvips) decodes PNG, JPEG and WebP sequentially and resizes as it reads: a 64-megapixel
picture goes through a few lines at a time, never whole in memory (Pillow would decode all of it,
~256 MB as RGBA, and copy it again to convert and resize). ``TileStore.write_bands`` pulls the rows
one tile row at a time, top to bottom.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyvips  # libvips: streaming decode and resize with bounded memory (pyvips-binary ships the library)

FITS = ("cover", "contain", "none")
FETCH_ROWS = 64
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

    Scaled pictures go through libvips' thumbnail, which decodes a JPEG at a fraction of its size
    (shrink-on-load) and streams the rest: the result, at most the frame's size, is then held. A
    picture kept at full size is read a band of rows at a time.
    """
    if fit not in FITS:
        raise ValueError(f"Unknown fit {fit!r}")
    header = _open(data)
    width, height = _oriented_size(header)
    if width * height > MAX_IMPORT_PIXELS:
        raise ImportRefused(f"The image is {width}×{height}; import at most {MAX_IMPORT_PIXELS // 1_000_000} megapixels.")
    frame_width, frame_height = frame_size
    if fit == "none" or (fit == "contain" and width <= frame_width and height <= frame_height):
        dx, dy = (0, 0) if fit == "none" else ((frame_width - width) // 2, (frame_height - height) // 2)

        def stream() -> RowReader:
            region = pyvips.Region.new(_rgba(_open(data, oriented=True)))

            def rows(top: int, bottom: int) -> np.ndarray:
                # In order, top to bottom, a few lines per fetch: the sequential decoder keeps only
                # the lines around the ones asked for.
                band = np.empty((bottom - top, width, 4), np.uint8)
                for start in range(top, bottom, FETCH_ROWS):
                    count = min(FETCH_ROWS, bottom - start)
                    band[start - top:start - top + count] = np.frombuffer(
                        region.fetch(0, start, width, count), np.uint8).reshape(count, width, 4)
                return band

            return rows

        return ImportSource(width, height, dx, dy, stream)
    try:
        options = {"height": frame_height, "size": "down"} if fit == "contain" else {
            "height": frame_height, "size": "both", "crop": "centre"}
        image = _rgba(pyvips.Image.thumbnail_buffer(data, frame_width, **options))
        pixels = np.frombuffer(image.write_to_memory(), np.uint8).reshape(image.height, image.width, 4)
    except pyvips.Error:
        raise ImportRefused("The picture could not be read to the end: the file is damaged.") from None
    dx, dy = (frame_width - image.width) // 2, (frame_height - image.height) // 2
    return ImportSource(image.width, image.height, dx, dy, lambda: lambda top, bottom: pixels[top:bottom])


def release_memory() -> None:
    """Hand freed memory back to the system after an import (glibc keeps what threads freed in its
    arenas otherwise, so a burst of imports would stay in the process's RSS)."""
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: nothing to do
            pass


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
