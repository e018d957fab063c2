"""A PNG encoder that streams: rows go in band by band, compressed chunks come out as they fill.

Memory stays at one band of rows plus zlib's window, so exporting a 100-megapixel canvas never
holds the image. Output is 8-bit RGBA, non-interlaced, with each row's filter chosen like libpng
does (the one whose bytes, read as signed, sum smallest).
"""
from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import numpy as np

from app.canvas.tiles import NotFound, TileStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Size of each IDAT chunk: small enough to reach the client promptly, large enough that chunk
# headers cost nothing.
IDAT_BYTES = 256 * 1024
# Rows filtered at once are capped at about this many bytes: the five candidate filters each
# need a few temporary arrays of that size.
FILTER_BATCH_BYTES = 1 << 18

Rows = np.ndarray | bytes | bytearray | memoryview


def png_chunks(
    width: int,
    height: int,
    rows: Iterable[Rows],
    *,
    text: dict[str, str] | None = None,
    compress_level: int = 6,
) -> Iterator[bytes]:
    """The bytes of an RGBA PNG, piece by piece.

    ``rows`` yields bands of whole rows, top to bottom: (n, width, 4) uint8 arrays or bytes of n
    rows. ``text`` becomes text chunks (e.g. {"parameters": ...}, the convention of generated
    images); values that are not Latin-1 are written as UTF-8 iTXt.
    """
    if width < 1 or height < 1:
        raise ValueError(f"A PNG must be at least 1×1 pixels, not {width}×{height}")
    yield PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    for key, value in (text or {}).items():
        yield _text_chunk(key, value)
    stride = width * 4
    compressor = zlib.compressobj(compress_level)
    pending = bytearray()
    previous = np.zeros(stride, np.uint8)
    done = 0
    batch_rows = max(1, FILTER_BATCH_BYTES // stride)
    for band in rows:
        band_rows = _as_rows(band, stride)
        if done + len(band_rows) > height:
            raise ValueError(f"More rows than the {height} of the image")
        for start in range(0, len(band_rows), batch_rows):
            batch = band_rows[start:start + batch_rows]
            pending += compressor.compress(_filtered(batch, previous))
            previous = batch[-1].copy()
            while len(pending) >= IDAT_BYTES:
                yield _chunk(b"IDAT", bytes(pending[:IDAT_BYTES]))
                del pending[:IDAT_BYTES]
        done += len(band_rows)
        band = band_rows = batch = None  # drop every view of the band before the next one is made
    if done != height:
        raise ValueError(f"Got {done} rows for an image {height} rows high")
    pending += compressor.flush()
    yield _chunk(b"IDAT", bytes(pending)) + _chunk(b"IEND", b"")


def write_png_stream(
    out: BinaryIO | Callable[[bytes], object],
    width: int,
    height: int,
    rows: Iterable[Rows],
    *,
    text: dict[str, str] | None = None,
) -> None:
    """Write an RGBA PNG (see ``png_chunks``) to a binary file or pass its pieces to a callable."""
    write = out.write if hasattr(out, "write") else out
    for piece in png_chunks(width, height, rows, text=text):
        write(piece)


def export_png(
    store: TileStore,
    canvas_id: int,
    region: tuple[int, int, int, int] | None = None,
    *,
    text: dict[str, str] | None = None,
) -> Iterator[bytes]:
    """The PNG of a canvas region (x, y, width, height), or of its content when None, as pieces.

    Checks run now, before the first piece, so errors surface before a response starts.
    """
    if region is None:
        box = store.bounds(canvas_id)
        if box is None:
            raise NotFound("This canvas is empty: there is nothing to export.")
        x0, y0, x1, y1 = box
        region = (x0, y0, x1 - x0, y1 - y0)
    x, y, width, height = region
    if width < 1 or height < 1:
        raise ValueError(f"An export must be at least 1×1 pixels, not {width}×{height}")
    return png_chunks(width, height, store.iter_rows(canvas_id, x, y, width, height), text=text)


def _as_rows(band: Rows, stride: int) -> np.ndarray:
    """A band as a (rows, stride) uint8 array."""
    if isinstance(band, np.ndarray):
        if band.dtype != np.uint8 or band.ndim != 3 or band.shape[1:] != (stride // 4, 4):
            raise ValueError(f"Expected rows of shape (n, {stride // 4}, 4) uint8, got {band.shape} {band.dtype}")
        return np.ascontiguousarray(band).reshape(len(band), stride)
    data = np.frombuffer(band, np.uint8)
    if len(data) % stride:
        raise ValueError(f"{len(data)} bytes are not whole rows of {stride} bytes")
    return data.reshape(-1, stride)


def _filtered(rows: np.ndarray, previous: np.ndarray) -> bytes:
    """Rows with the PNG filter that suits each best, each row led by its filter type byte."""
    count, stride = rows.shape
    out = np.empty((count, stride + 1), np.uint8)
    if not rows.any() and not previous.any():
        out[:] = 0  # transparent rows (most of a sparse canvas): filter None, all zeros
        return out.tobytes()
    # uint8 arithmetic wraps modulo 256, as the filters are defined.
    above = np.vstack([previous[None], rows[:-1]])
    left = np.zeros_like(rows)
    left[:, 4:] = rows[:, :-4]
    upper_left = np.zeros_like(rows)
    upper_left[:, 4:] = above[:, :-4]
    a, b, c = (v.astype(np.int16) for v in (left, above, upper_left))
    # Paeth predictor (PNG spec 9.4): the neighbour nearest to left + above - upper_left.
    to_a, to_b, to_c = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((to_a <= to_b) & (to_a <= to_c), left, np.where(to_b <= to_c, above, upper_left))
    candidates = (
        rows,
        rows - left,
        rows - above,
        rows - ((a + b) >> 1).astype(np.uint8),
        rows - paeth,
    )
    # libpng's measure of a filter: the sum of its bytes' sizes read as signed.
    costs = np.stack([np.abs(candidate.view(np.int8).astype(np.int16)).sum(axis=1, dtype=np.int64)
                      for candidate in candidates])
    best = costs.argmin(axis=0)
    out[:, 0] = best
    for kind, candidate in enumerate(candidates):
        chosen = best == kind
        out[chosen, 1:] = candidate[chosen]
    return out.tobytes()


def _text_chunk(key: str, value: str) -> bytes:
    try:
        keyword = key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"PNG text keys must be Latin-1: {key!r}") from None
    if not 1 <= len(keyword) <= 79 or b"\0" in keyword:
        raise ValueError(f"PNG text keys must be 1–79 characters without NUL: {key!r}")
    try:
        return _chunk(b"tEXt", keyword + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # iTXt: keyword, no compression, empty language tag and translated keyword, UTF-8 text.
        return _chunk(b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
