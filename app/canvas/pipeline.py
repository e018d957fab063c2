"""The steps of a canvas generation that touch pixels, as plain functions (no Flask, no database).

A job runs: ``prepare_frame`` (what is known, what to repaint, the infilled image) →
``model_images`` (fitted to the model, mask in its polarity) → the model → ``fit_result`` back to
the frame → ``finish_variation`` (colour match, and the preview of the frame as accepting leaves
it). Accepting writes the finished result through the paste mask with ``TileStore.write_region``,
which blends exactly like ``compose.paste_back``: the preview shows what accepting will write.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from app.canvas.compose import (
    fit_to_model,
    grown_mask,
    infill,
    keep_mask,
    keep_over_result,
    match_colour,
    model_mask,
    outpaint_mask,
    paste_back,
    paste_mask,
    scale_back,
    unknown_area,
)
from app.canvas.tiles import TILE_LIMIT, TileStore

# Models draw poorly far below the size they were trained at: a small frame is sent enlarged.
MIN_MODEL_PIXELS = 512 * 512
# Staged files are written often and read once or twice: fast compression.
STAGING_PNG_LEVEL = 1
# A staged result is read once, by accept: stored, not compressed (zlib level 0 writes ~2x faster).
RESULT_PNG_LEVEL = 0
# The staged preview goes to the browser: WebP lossless at its fastest method encodes faster than PNG
# level 1 and ~25 % smaller (bench/bench_canvas.py, "tile encodings"); every browser shows it.
PREVIEW_WEBP = {"format": "WEBP", "lossless": True, "quality": 0, "method": 0, "exact": True}

Mode = Literal["inpaint", "text"]

NOTHING_TO_REPAINT = ("Nothing to repaint: the frame is all picture and no mask is painted. Paint over what "
                      "should change, or move the frame partly onto empty space to extend the picture.")


@dataclass(frozen=True)
class ModelRules:
    """The sizes a model takes: sides a multiple of ``multiple``, at most ``max_pixels`` (and ``max_side``)."""

    multiple: int
    max_pixels: int
    max_side: int | None = None

    def send_size(self, width: int, height: int) -> tuple[int, int]:
        return fit_to_model(width, height, self.multiple, self.max_pixels,
                            min_pixels=MIN_MODEL_PIXELS, max_side=self.max_side)


def rules_with_size_choices(rules: ModelRules, width_choices: list, height_choices: list) -> ModelRules:
    """Tighten ``rules`` for a model whose width and height inputs are menus (e.g. 64…1024 by 64)."""
    sides = [int(v) for v in (*width_choices, *height_choices) if isinstance(v, int) and v > 0]
    if not sides:
        return rules
    multiple = math.lcm(rules.multiple, math.gcd(*sides))
    max_side = max(sides) if rules.max_side is None else min(rules.max_side, max(sides))
    return ModelRules(multiple, rules.max_pixels, max_side)


@dataclass
class PreparedFrame:
    mode: Mode
    known: Image.Image  # "L": 255 where the canvas has content (alpha > 0)
    repaint: Image.Image  # "L": what the model repaints: the painted mask plus every pixel not fully opaque
    paste: Image.Image  # "L": the mask a result is pasted through (repaint in full, blend ring outside it)
    image: Image.Image | None  # RGB frame with the unknown area infilled; None in text mode
    keep: Image.Image | None = None  # "L": half-transparent pixels not painted over, kept over the result


def prepare_frame(region: Image.Image, painted: Image.Image, infill_method: str, mask_blur: int) -> PreparedFrame:
    """Decide how to generate a frame and build its masks.

    With no known pixel in the frame there is nothing to keep, whatever was painted: it is drawn
    from text (mode "text") and the result replaces the whole frame.
    """
    alpha = region.getchannel("A")
    known = alpha.point(lambda value: 255 if value else 0)
    repaint = outpaint_mask(painted, alpha)
    paste = paste_mask(repaint, mask_blur)
    if known.getbbox() is None:
        return PreparedFrame("text", known, repaint, paste, None)
    return PreparedFrame("inpaint", known, repaint, paste, infill(region, known, infill_method),
                         keep_mask(painted, alpha))


def nothing_to_repaint(prepared: PreparedFrame) -> bool:
    return prepared.mode == "inpaint" and prepared.repaint.getbbox() is None


def model_images(prepared: PreparedFrame, rules: ModelRules, polarity: str) -> tuple[Image.Image, Image.Image]:
    """The image and mask to send, at the model's size; the mask in the polarity the model expects."""
    size = rules.send_size(*prepared.image.size)
    image = prepared.image if prepared.image.size == size else prepared.image.resize(size, Image.Resampling.LANCZOS)
    # What was painted, never less: binary, scaled without losing thin strokes, grown by a latent cell.
    return image, model_mask(grown_mask(prepared.repaint, size), polarity)


def nearest_aspect_ratio(width: int, height: int, choices: list) -> str | None:
    """The "w:h" choice closest (in log ratio) to width/height, or None when none parses."""
    best, best_distance = None, math.inf
    for choice in choices:
        try:
            a, b = (int(part) for part in str(choice).split(":"))
        except ValueError:
            continue
        if a <= 0 or b <= 0:  # "0:1" in a model's enum is junk, not a ratio
            continue
        distance = abs(math.log(a / b) - math.log(width / height))
        if distance < best_distance:
            best, best_distance = str(choice), distance
    return best


def fit_result(output: Image.Image, size: tuple[int, int], mode: Mode) -> Image.Image:
    """A model output at the frame's size, RGB.

    An inpainting output has the frame's proportions and is only resized; a text-to-image output
    has the nearest proportions the model offers, so it is scaled to cover the frame and centred.
    """
    output = output.convert("RGB")
    if mode == "text":
        return ImageOps.fit(output, size, Image.Resampling.LANCZOS)
    return scale_back(output, size)


def finish_variation(region: Image.Image, result: Image.Image, paste: Image.Image,
                     colour_match: bool, keep: Image.Image | None = None) -> tuple[Image.Image, Image.Image]:
    """(result to paste, preview): the result colour-matched if asked, the half-transparent pixels
    under ``keep`` composited over it, and the frame after pasting it."""
    if colour_match:
        result = match_colour(result, region, paste)
    if keep is not None:
        result = keep_over_result(region, result, keep)
    return result, paste_back(region, result, paste)


def render_thumbnail(store: TileStore, canvas_id: int, max_side: int = 320) -> Image.Image | None:
    """A small picture of the whole canvas made from zoomed-out tiles, or None for an empty canvas.

    Uses the most detailed level at which the content spans at most 2×2 tiles, so it reads at most
    a handful of files however large the canvas is; a canvas too large even for the top level is
    drawn from that level with every tile shrunk as it is placed.
    """
    chosen = None
    for level in range(store.levels, -1, -1):
        refs = store.tiles_in(canvas_id, level, -TILE_LIMIT, -TILE_LIMIT, TILE_LIMIT + 1, TILE_LIMIT + 1)
        if not refs:
            return None
        span = 1 + max(max(r.tx for r in refs) - min(r.tx for r in refs),
                       max(r.ty for r in refs) - min(r.ty for r in refs))
        if span > 2 and chosen is not None:
            break
        chosen = refs
        if span > 2:
            break
    tx0, ty0 = min(r.tx for r in chosen), min(r.ty for r in chosen)
    columns = max(r.tx for r in chosen) - tx0 + 1
    rows = max(r.ty for r in chosen) - ty0 + 1
    size = store.tile_size
    # Draw at most 1024 px across, then crop to the content and shrink to the thumbnail.
    step = max(1, min(size, 1024 // max(columns, rows)))
    sheet = Image.new("RGBA", (columns * step, rows * step))
    for ref in chosen:
        with Image.open(store.tile_path(canvas_id, ref.level, ref.tx, ref.ty, ref.version)) as tile:
            tile = tile.convert("RGBA")
            if step != size:
                tile = tile.resize((step, step), Image.Resampling.BOX)
            sheet.paste(tile, ((ref.tx - tx0) * step, (ref.ty - ty0) * step))
    box = sheet.getchannel("A").getbbox()
    if box is None:
        return None
    sheet = sheet.crop(box)
    sheet.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return sheet


def known_overlay(region: Image.Image) -> tuple[Image.Image, str]:
    """What a generation would treat as unknown in a region, as an "LA" image (opaque where unknown:
    every pixel not fully opaque, exactly ``compose.unknown_area``, which ``outpaint_mask`` repaints),
    and "none", "some" or "all" to say how much of the region is known: "none" when no pixel has any
    content (the frame is drawn from text), "all" when every pixel is opaque (nothing is outpainted)."""
    alpha = region.getchannel("A")
    unknown = unknown_area(alpha)
    overlay = Image.merge("LA", (Image.new("L", region.size, 255), Image.fromarray(unknown)))
    amount = "all" if not unknown.any() else "some" if np.asarray(alpha).any() else "none"
    return overlay, amount


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=compress_level)
    return buffer.getvalue()


def save_png(path: Path, image: Image.Image, compress_level: int = STAGING_PNG_LEVEL) -> None:
    """Write a PNG so readers see all of it or nothing (temp file + rename)."""
    save_image(path, image, format="PNG", compress_level=compress_level)


def save_image(path: Path, image: Image.Image, **options) -> None:
    """Write an image (Pillow save ``options``) so readers see all of it or nothing (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            image.save(file, **options)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_variation(result_path: Path, result: Image.Image, preview_path: Path, preview: Image.Image) -> None:
    """Write a staged variation's result (PNG, for accept) and preview (lossless WebP, for the browser)
    at once: both encoders release the GIL, so the two run side by side."""
    with ThreadPoolExecutor(2) as pool:
        writes = [pool.submit(save_png, result_path, result, RESULT_PNG_LEVEL),
                  pool.submit(save_image, preview_path, preview, **PREVIEW_WEBP)]
    for write in writes:
        write.result()
