"""Helpers for the canvas browser tests: a new 512² canvas, strokes, imports and the page's mask."""
from __future__ import annotations

import numpy as np
from PIL import Image


def next_frame(page):
    """The view redraws once per animation frame: wait until what an input changed is on screen."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def mask_alpha(page):
    """The painted mask's alpha over the frame, as the page holds it: (height, width) uint8."""
    data = page.evaluate("""() => {
        const canvas = document.getElementById("canvas-mask");
        const rgba = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        return {width: canvas.width, height: canvas.height, alpha: Array.from(rgba.filter((_, i) => i % 4 === 3))};
    }""")
    return np.array(data["alpha"], np.uint8).reshape(data["height"], data["width"])


def new_canvas(page, live_server, name):
    """Create a canvas with a 512² frame shown; returns its page URL."""
    page.goto(f"{live_server}/canvas/")
    page.get_by_label("Name of a new canvas", exact=True).fill(name)
    page.get_by_role("button", name="New canvas").click()
    page.wait_for_url(f"{live_server}/canvas/*")
    for label in ("Width", "Height"):
        page.get_by_label(label, exact=True).fill("512")
        page.get_by_label(label, exact=True).dispatch_event("change")
    page.get_by_role("button", name="Show frame").click()
    next_frame(page)
    # The frame is remembered for the next visit (another tab too) once things settle.
    page.wait_for_function("() => Object.keys(localStorage).some(key => localStorage[key].includes('\"width\":512'))")
    return page.url.rstrip("/")


def stroke(page, y, x0=100, x1=400):
    """A horizontal brush stroke across the frame at row `y`, from x0 to x1 (frame pixels)."""
    box = page.locator("#canvas-frame").bounding_box()
    page.mouse.move(box["x"] + x0, box["y"] + y)
    page.mouse.down()
    for step in range(1, 9):
        page.mouse.move(box["x"] + x0 + (x1 - x0) * step / 8, box["y"] + y)
    page.mouse.up()


def import_picture(page, tmp_path, pixels, name="picture.png"):
    """Choose `pixels` (an array) as a picture to import; the caller waits for what follows."""
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    page.locator("#canvas-import").set_input_files(str(path))
