"""The painted mask kept with a canvas, one per user, so it survives a reload and another device.

Stored under DATA_DIR as ``canvas-masks/<canvas>/<user>.png`` (an "L" image cropped to what is
painted) beside ``<user>.json`` ({x, y, width, height, version}: where the PNG lies on the canvas).
Plain functions; the caller checks ownership.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

from PIL import Image

from app.atomic import write_atomic
from app.canvas.compose import mask_from_png

MASK_DIR = Path("canvas-masks")


def image_path(canvas_id: int, user_id: int) -> Path:
    """The mask PNG of a canvas and user, relative to DATA_DIR."""
    return MASK_DIR / str(int(canvas_id)) / f"{int(user_id)}.png"


def _meta_path(canvas_id: int, user_id: int) -> Path:
    return MASK_DIR / str(int(canvas_id)) / f"{int(user_id)}.json"


def save(data_dir: Path, canvas_id: int, user_id: int, rect: tuple[int, int, int, int], png: bytes) -> int | None:
    """Keep ``png`` (the mask over ``rect`` = x, y, width, height; white = painted) as the
    user's mask of the canvas; returns its version, or None when nothing is painted (the saved mask
    is deleted). Raises ValueError for a PNG that is not a readable image of rect's size."""
    x, y, width, height = rect
    mask = mask_from_png(png, (width, height))
    box = mask.getbbox()
    image, meta = data_dir / image_path(canvas_id, user_id), data_dir / _meta_path(canvas_id, user_id)
    if box is None:
        meta.unlink(missing_ok=True)
        image.unlink(missing_ok=True)
        return None
    cropped = mask.crop(box)
    buffer = io.BytesIO()
    cropped.save(buffer, "PNG", compress_level=1)
    version = time.time_ns() // 1000
    write_atomic(image, buffer.getvalue())
    # The position is written after the image: a reader never finds a position without its image.
    write_atomic(meta, json.dumps({"x": x + box[0], "y": y + box[1], "width": cropped.width,
                                   "height": cropped.height, "version": version}).encode())
    return version


def apply_patch(data_dir: Path, canvas_id: int, user_id: int, box: tuple[int, int, int, int],
                alpha: bytes) -> int | None:
    """Set the mask's pixels in ``box`` (x, y, width, height on the canvas) to ``alpha`` (one byte a
    pixel, row by row: an undo step's before or after) and keep it; returns the new version, or None
    when nothing is painted any more. Raises ValueError when ``alpha`` is not width × height bytes."""
    x, y, width, height = box
    if len(alpha) != width * height:
        raise ValueError(f"The mask patch holds {len(alpha)} bytes, not {width} × {height}")
    patch = Image.frombytes("L", (width, height), alpha)
    saved = load(data_dir, canvas_id, user_id)
    if saved is None:
        left, top, right, bottom = x, y, x + width, y + height
    else:
        left, top = min(x, saved["x"]), min(y, saved["y"])
        right, bottom = max(x + width, saved["x"] + saved["width"]), max(y + height, saved["y"] + saved["height"])
    canvas = Image.new("L", (right - left, bottom - top))
    if saved is not None:
        with Image.open(data_dir / image_path(canvas_id, user_id)) as old:
            canvas.paste(old.convert("L"), (saved["x"] - left, saved["y"] - top))
    canvas.paste(patch, (x - left, y - top))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", compress_level=1)
    return save(data_dir, canvas_id, user_id, (left, top, canvas.width, canvas.height), buffer.getvalue())


def load(data_dir: Path, canvas_id: int, user_id: int) -> dict | None:
    """{x, y, width, height, version} of the user's saved mask of the canvas, or None."""
    meta = data_dir / _meta_path(canvas_id, user_id)
    try:
        saved = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not (data_dir / image_path(canvas_id, user_id)).is_file():
        return None
    return {name: int(saved[name]) for name in ("x", "y", "width", "height", "version")}


def delete_canvas(data_dir: Path, canvas_id: int) -> None:
    """Remove every user's mask of a canvas."""
    folder = data_dir / MASK_DIR / str(int(canvas_id))
    for path in folder.glob("*") if folder.is_dir() else ():
        path.unlink(missing_ok=True)
    if folder.is_dir():
        folder.rmdir()


def open_mask(data_dir: Path, canvas_id: int, user_id: int) -> Image.Image | None:
    path = data_dir / image_path(canvas_id, user_id)
    return Image.open(path) if path.is_file() else None
