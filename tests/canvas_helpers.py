"""Helpers for the canvas tests: random pixels, PNG bytes, a canvas with painted pixels."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from app.canvas.models import Canvas
from app.canvas.staging import tile_store
from app.extensions import db


def noise(width, height, seed=0, *, channels=4, alpha=None):
    """Random pixels, (height, width, channels) uint8: any wrong copy or blend shows. ``alpha`` fixes
    the alpha channel (255: opaque); None leaves it random, zeros included."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    if alpha is not None:
        pixels[..., 3] = alpha
    return pixels


def png(pixels_or_image, image_format="PNG"):
    image = pixels_or_image if isinstance(pixels_or_image, Image.Image) else Image.fromarray(pixels_or_image)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def decode(data):
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def make_canvas(user, name="Test canvas"):
    canvas = Canvas(user_id=user.id, name=name, settings={})
    db.session.add(canvas)
    db.session.commit()
    return canvas


def paint(canvas, x, y, pixels):
    """Write `pixels` at (x, y) of the canvas as one revision; returns the new head."""
    return tile_store().write_region(canvas.id, x, y, Image.fromarray(pixels), base_revision=None,
                                     description="test paint")


def read(canvas, x, y, width, height):
    return np.array(tile_store().read_region(canvas.id, x, y, width, height))
