"""A user imports a picture, paints a mask with the mouse, generates, accepts a variation and undoes it."""
import io

import numpy as np
from PIL import Image

from tests.fake_replicate import fill_colour

SEED = 1234
BRUSH = 64
BLUR = 8


def tile_pixels(page, base, level, tx, ty):
    listing = page.request.get(f"{base}/tiles?level={level}&tx0={tx}&ty0={ty}&tx1={tx + 1}&ty1={ty + 1}").json()
    [[_, _, version]] = listing["tiles"]
    response = page.request.get(f"{base}/tiles/{level}/{tx}/{ty}/{version}.png")
    assert response.headers["cache-control"] == "private, max-age=31536000, immutable"
    return version, np.array(Image.open(io.BytesIO(response.body())).convert("RGBA"))


def next_frame(page):
    """The view redraws once per animation frame: wait until what an input changed is on screen."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def distance_to_segment(shape, start, end):
    """Each pixel centre's distance to the segment start–end (canvas pixels)."""
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    (x0, y0), (x1, y1) = start, end
    t = np.clip(((xs - x0) * (x1 - x0) + (ys - y0) * (y1 - y0)) / ((x1 - x0) ** 2 + (y1 - y0) ** 2), 0, 1)
    return np.hypot(xs - (x0 + t * (x1 - x0)), ys - (y0 + t * (y1 - y0)))


def test_paint_a_mask_generate_accept_and_undo(logged_in, live_server, fake_replicate, tmp_path):
    page, live_server = logged_in, live_server
    page.goto(f"{live_server}/canvas/")
    page.get_by_label("Name of a new canvas", exact=True).fill("Harbour")
    page.get_by_role("button", name="New canvas").click()
    page.wait_for_url(f"{live_server}/canvas/*")
    base = page.url.rstrip("/")

    # Start from a known picture: a 512×512 import into a 512×512 frame at the origin.
    page.get_by_label("Width", exact=True).fill("512")
    page.get_by_label("Width", exact=True).dispatch_event("change")
    page.get_by_label("Height", exact=True).fill("512")
    page.get_by_label("Height", exact=True).dispatch_event("change")
    picture = np.random.default_rng(7).integers(0, 256, (512, 512, 4), dtype=np.uint8)
    picture[..., 3] = 255
    path = tmp_path / "harbour.png"
    Image.fromarray(picture).save(path)
    page.locator("#canvas-import").set_input_files(str(path))
    page.get_by_text("Imported harbour.png").wait_for()
    imported_version, tile = tile_pixels(page, base, 0, 0, 0)
    assert np.array_equal(tile, picture)

    # Paint a horizontal stroke across the middle of the frame at 100% zoom.
    page.get_by_role("button", name="Show frame").click()
    next_frame(page)
    assert page.locator("#status-zoom").inner_text() == "100%"
    box = page.locator("#canvas-frame").bounding_box()
    start, end = (160, 256), (352, 256)
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(box["x"] + start[0] + (end[0] - start[0]) * step / 12, box["y"] + start[1])
    page.mouse.up()

    page.get_by_label("Prompt", exact=True).fill("a red boat")
    page.get_by_label("Num Outputs", exact=True).fill("2")
    page.get_by_label("Seed", exact=True).fill(str(SEED))
    page.get_by_role("button", name="Generate").click()
    strip = page.get_by_role("group", name="Staged variations")
    strip.get_by_text("Variation 1 of 2").wait_for(timeout=60_000)
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("ArrowRight")
    strip.get_by_text("Variation 2 of 2").wait_for()
    page.keyboard.press("Enter")
    page.locator("#status-message", has_text="Accepted variation 2. Ctrl+Z undoes it.").wait_for()
    strip.get_by_text("Kept variations: 1 accepted, 1 set aside.").wait_for()  # folded: painting goes on

    create = [r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert create[0].json["input"]["num_outputs"] == 2 and create[0].json["input"]["seed"] == SEED

    accepted_version, after = tile_pixels(page, base, 0, 0, 0)
    assert accepted_version > imported_version
    distance = distance_to_segment(after.shape[:2], start, end)
    far = distance > BRUSH / 2 + 3 * BLUR + 2
    assert np.array_equal(after[far], picture[far])  # untouched wherever the brush and its blur did not reach
    # Where the feathered mask is at full strength: along the stroke, away from its round ends.
    core = distance_to_segment(after.shape[:2], (start[0] + BRUSH, 256), (end[0] - BRUSH, 256)) < BRUSH / 2 - 2.5 * BLUR - 2
    assert core.sum() > 1000
    assert (after[core][:, :3] == fill_colour(SEED, 1)).all()  # the second variation, pasted in full
    changed = (after != picture).any(axis=2)
    assert changed[distance < BRUSH / 2 - 1].mean() > 0.98  # the whole stroke was repainted

    page.keyboard.press("Control+z")
    page.locator("#status-revision", has_text=f"Revision {imported_version}").wait_for()
    undone_version, undone = tile_pixels(page, base, 0, 0, 0)
    assert undone_version == imported_version and np.array_equal(undone, picture)


def test_frame_moves_on_the_grid_the_view_pans_and_zooms_and_errors_show_in_the_form(logged_in, live_server, tmp_path):
    page, live_server = logged_in, live_server
    page.goto(f"{live_server}/canvas/")
    page.get_by_role("button", name="New canvas").click()
    page.wait_for_url(f"{live_server}/canvas/*")
    Image.new("RGB", (256, 256), (20, 120, 200)).save(tmp_path / "blue.png")
    page.locator("#canvas-import").set_input_files(str(tmp_path / "blue.png"))
    page.get_by_text("Imported blue.png").wait_for()

    page.get_by_role("button", name="Show frame").click()
    next_frame(page)
    zoom = page.locator("#status-zoom").inner_text()
    scale = float(zoom.rstrip("%")) / 100
    label = page.locator(".canvas-frame-label").bounding_box()
    page.mouse.move(label["x"] + 5, label["y"] + 5)
    page.mouse.down()
    page.mouse.move(label["x"] + 5 + 150 * scale, label["y"] + 5 - 70 * scale, steps=6)
    page.mouse.up()
    # 150 and -70 canvas pixels, snapped to the 64 px grid.
    assert page.get_by_label("X", exact=True).input_value() == "128"
    assert page.get_by_label("Y", exact=True).input_value() == "-64"
    page.get_by_role("button", name="768").click()
    next_frame(page)
    assert page.get_by_label("Width", exact=True).input_value() == "768"

    frame_before = page.locator("#canvas-frame").bounding_box()
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("ArrowLeft")
    next_frame(page)
    frame_after = page.locator("#canvas-frame").bounding_box()
    assert frame_after["x"] - frame_before["x"] == 96  # the view moved right by one arrow step
    page.keyboard.down(" ")
    page.mouse.move(500, 400)
    page.mouse.down()
    page.mouse.move(440, 380, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    next_frame(page)
    moved = page.locator("#canvas-frame").bounding_box()
    assert (round(moved["x"] - frame_after["x"]), round(moved["y"] - frame_after["y"])) == (-60, -20)
    page.mouse.move(480, 420)
    page.mouse.wheel(0, 400)
    page.locator("#status-zoom").filter(has_not_text=zoom).wait_for()
    assert float(page.locator("#status-zoom").inner_text().rstrip("%")) < float(zoom.rstrip("%"))

    page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-schnell")
    page.locator("#canvas-model-options", has_text="draws from text only").wait_for()
    page.get_by_label("Prompt", exact=True).fill("a lighthouse")
    page.get_by_role("button", name="Generate").click()
    error = page.locator("#canvas-form-errors")
    error.wait_for()
    assert "can only draw into an empty frame" in error.inner_text()
    assert page.get_by_label("Prompt", exact=True).input_value() == "a lighthouse"
    assert page.locator(".job").count() == 0
