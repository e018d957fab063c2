"""The canvas list and page, tile serving, import, export, undo/redo, bad input and ownership."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.canvas.compose import outpaint_mask
from app.canvas.models import Canvas
from app.canvas.staging import tile_store
from app.canvas.tiles import COUNT_BITS
from app.extensions import db
from app.models import Job, User
from tests.canvas_helpers import decode, make_canvas, noise, paint, png, read


# ---- helpers ----------------------------------------------------------------------------------


def other_user():
    eve = User(username="eve")
    eve.set_password("x" * 12)
    db.session.add(eve)
    db.session.commit()
    return eve


# ---- the list -----------------------------------------------------------------------------------


def test_create_rename_and_delete_a_canvas(client, user, app):
    response = client.post("/canvas/", data={"name": "  Harbour   at dusk "})
    canvas = db.session.scalar(db.select(Canvas))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/canvas/{canvas.id}")
    assert canvas.name == "Harbour at dusk" and canvas.user_id == user.id
    assert "Harbour at dusk" in client.get("/canvas/").get_data(as_text=True)

    renamed = client.post(f"/canvas/{canvas.id}/rename", data={"name": "Harbour"}, headers={"HX-Request": "true"})
    assert renamed.status_code == 200 and ">Harbour</a>" in renamed.get_data(as_text=True)
    refused = client.post(f"/canvas/{canvas.id}/rename", data={"name": "   "}, headers={"HX-Request": "true"})
    assert refused.status_code == 422 and "Give the canvas a name" in refused.get_data(as_text=True)
    db.session.refresh(canvas)
    assert canvas.name == "Harbour"

    paint(canvas, 0, 0, noise(600, 600, alpha=255))
    client.get("/canvas/")  # makes the thumbnail
    data_dir = Path(app.config["DATA_DIR"])
    tile_dir = data_dir / "canvases" / str(canvas.id)
    thumbnail = data_dir / "canvas-thumbnails" / f"{canvas.id}.png"
    assert tile_dir.is_dir() and thumbnail.is_file()

    response = client.post(f"/canvas/{canvas.id}/delete")
    assert response.status_code == 302
    assert db.session.get(Canvas, canvas.id) is None
    assert tile_store().tiles_in(canvas.id, 0, -10, -10, 10, 10) == [] and tile_store().head(canvas.id) == 0
    assert not tile_dir.exists() and not thumbnail.exists()
    assert client.get(f"/canvas/{canvas.id}").status_code == 404


def test_a_deleted_canvas_id_is_never_given_again(client, user):
    """Tile URLs are cached for good, so a new canvas must not reuse an old canvas's id."""
    first = make_canvas(user)
    first_id = first.id
    client.post(f"/canvas/{first_id}/delete")
    assert make_canvas(user).id > first_id


def test_the_thumbnail_is_drawn_from_a_zoomed_out_level(client, user):
    canvas = make_canvas(user)
    pixels = np.zeros((1200, 3000, 4), np.uint8)
    pixels[..., :3] = (200, 40, 10)
    pixels[..., 3] = 255
    paint(canvas, 5000, -700, pixels)
    page = client.get("/canvas/").get_data(as_text=True)
    assert f"/canvas/{canvas.id}/thumbnail.png" in page
    response = client.get(f"/canvas/{canvas.id}/thumbnail.png")
    assert response.status_code == 200 and response.mimetype == "image/png"
    thumbnail = decode(response.data).convert("RGBA")
    assert max(thumbnail.size) <= 320
    assert abs(thumbnail.width / thumbnail.height - 2.5) < 0.1  # cropped to the content, not to the tiles
    red, green, blue, alpha = thumbnail.getpixel((thumbnail.width // 2, thumbnail.height // 2))
    assert (red, green, blue, alpha) == (200, 40, 10, 255)
    empty = make_canvas(user, "empty")
    assert client.get(f"/canvas/{empty.id}/thumbnail.png").status_code == 404


# ---- the page -------------------------------------------------------------------------------


def test_the_page_has_the_tools_and_a_form_from_the_models_schema(client, user):
    canvas = make_canvas(user)
    page = client.get(f"/canvas/{canvas.id}").get_data(as_text=True)
    for tool in ("hand", "brush", "eraser", "fill", "rect"):
        assert f'data-tool="{tool}"' in page
    for action in ("clear-mask", "invert-mask", "undo", "redo"):
        assert f'data-action="{action}"' in page
    for name in ("prompt", "num_outputs", "guidance", "frame_x", "frame_y", "frame_w", "frame_h", "infill",
                 "colour_match", "mask"):
        assert f'name="{name}"' in page
    assert 'name="mask_blur" form="canvas-form"' in page
    # The page sends the image and mask itself; FLUX Fill [pro]'s outpaint presets would ignore the mask.
    assert 'id="in-image"' not in page and 'id="in-mask"' not in page
    assert "black-forest-labs/flux-fill-dev" in page and "black-forest-labs/flux-schnell" in page
    assert "salesforce/blip" not in page  # captioning is not a canvas model
    assert 'src="/static/js/canvas.js"' in page and "<script>" not in page and "style=" not in page


def test_switching_the_model_swaps_its_options_and_keeps_what_was_typed(client, user):
    canvas = make_canvas(user)
    response = client.get(f"/canvas/{canvas.id}/form", query_string={
        "model": "black-forest-labs/flux-fill-pro", "prompt": "a lighthouse", "guidance": "30", "seed": "7"})
    partial = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="canvas-model-options"' in partial
    assert 'name="safety_tolerance"' in partial and 'name="outpaint"' not in partial
    assert "a lighthouse" in partial and 'name="seed" value="7"' in partial
    assert 'name="guidance" value="30"' in partial
    # FLUX.1 [schnell] allows at most 4 steps: a typed 28 would block the form, so its default comes back.
    schnell = client.get(f"/canvas/{canvas.id}/form", query_string={
        "model": "black-forest-labs/flux-schnell", "prompt": "a lighthouse", "num_inference_steps": "28"})
    assert 'name="num_inference_steps" value="4"' in schnell.get_data(as_text=True)
    assert 'data-multiple="32"' in partial and f'data-max-pixels="{1440 * 1440}"' in partial
    sd = client.get(f"/canvas/{canvas.id}/form", query_string={
        "model": "stability-ai/stable-diffusion-inpainting:e5a34f913de0adc560d20e002c45ad43a80031b62caacc3d84010c6b6a64870c"})
    assert 'data-multiple="64"' in sd.get_data(as_text=True)  # its width/height menus step by 64


# ---- tiles ----------------------------------------------------------------------------------


def test_tile_listing_and_tiles_are_served_with_immutable_caching(client, user):
    canvas = make_canvas(user)
    pixels = noise(700, 300, seed=3, alpha=255)
    head = paint(canvas, -100, 200, pixels)
    listing = client.get(f"/canvas/{canvas.id}/tiles", query_string={"level": 0, "tx0": -2, "ty0": -2, "tx1": 3, "ty1": 3})
    assert listing.status_code == 200
    body = listing.get_json()
    assert body["head"] == head and body["level"] == 0
    assert sorted(map(tuple, body["tiles"])) == [(-1, 0, head), (0, 0, head), (1, 0, head)]
    url = f"/canvas/{canvas.id}/tiles/0/-1/0/{head}.png"
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    etag = response.headers["ETag"]
    tile = np.array(decode(response.data).convert("RGBA"))
    assert np.array_equal(tile[200:500, 412:], pixels[:, :100])  # canvas x -100..0, y 200..500
    assert not tile[:200].any() and not tile[500:].any()
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304

    zoomed_out = client.get(f"/canvas/{canvas.id}/tiles", query_string={"level": 3, "tx0": -1, "ty0": -1, "tx1": 1, "ty1": 1})
    # A level tile's version: the newest level 0 version under it, and how many there are.
    listed = sorted(map(tuple, zoomed_out.get_json()["tiles"]))
    assert [(tx, ty, version >> COUNT_BITS) for tx, ty, version in listed] == [(-1, 0, head), (0, 0, head)]
    level_version = listed[1][2]
    assert client.get(f"/canvas/{canvas.id}/tiles/3/0/0/{level_version}.png").status_code == 200
    assert client.get(f"/canvas/{canvas.id}/tiles/3/0/0/{level_version + 1}.png").status_code == 404


@pytest.mark.parametrize("query, message", [
    ({"level": 0, "tx0": "a", "ty0": 0, "tx1": 1, "ty1": 1}, "tx0 must be a whole number"),
    ({"level": 9, "tx0": 0, "ty0": 0, "tx1": 1, "ty1": 1}, "level must be between 0 and 6"),
    ({"level": 0, "tx0": 0, "ty0": 0, "tx1": 0, "ty1": 1}, "The tile range is empty"),
    ({"level": 0, "tx0": 0, "ty0": 0, "tx1": 100, "ty1": 100}, "at most 4096 tiles"),
    ({"level": 0, "tx0": -(2**40), "ty0": 0, "tx1": 1, "ty1": 1}, "tx0 must be between"),
])
def test_bad_tile_listings_are_refused_with_a_message(client, user, query, message):
    canvas = make_canvas(user)
    response = client.get(f"/canvas/{canvas.id}/tiles", query_string=query)
    assert response.status_code == 400 and message in response.get_json()["error"]


def test_a_tile_version_that_does_not_exist_is_404(client, user):
    canvas = make_canvas(user)
    head = paint(canvas, 0, 0, noise(64, 64, alpha=255))
    assert client.get(f"/canvas/{canvas.id}/tiles/0/0/0/{head + 1}.png").status_code == 404
    assert client.get(f"/canvas/{canvas.id}/tiles/0/5/5/{head}.png").status_code == 404
    assert client.get(f"/canvas/{canvas.id}/tiles/12/0/0/{head}.png").status_code == 404


def test_unknown_overlay_marks_the_never_painted_part_of_a_frame(client, user):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(100, 200, alpha=255))
    response = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 0, "y": 0, "w": 200, "h": 200})
    assert response.status_code == 200 and response.headers["X-Canvas-Known"] == "some"
    alpha = np.array(decode(response.data).getchannel("A"))
    assert (alpha[:, :100] == 0).all() and (alpha[:, 100:] == 255).all()
    empty = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 500, "y": 0, "w": 64, "h": 64})
    assert empty.headers["X-Canvas-Known"] == "none"
    full = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 0, "y": 0, "w": 64, "h": 64})
    assert full.headers["X-Canvas-Known"] == "all"
    too_big = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 0, "y": 0, "w": 9000, "h": 64})
    assert too_big.status_code == 422 and "64 to 4096 pixels" in too_big.get_json()["error"]



def test_unknown_overlay_is_what_an_outpaint_repaints_half_transparent_pixels_included(client, user):
    """A cut-out with soft edges: its half-transparent pixels are repainted by an outpaint
    (compose.outpaint_mask), so the overlay stripes them too, pixel for pixel."""
    canvas = make_canvas(user)
    picture = noise(128, 128, alpha=255)
    ramp = np.tile(np.arange(128, dtype=np.uint8) * 2, (128, 1))  # alpha 0, 2, …, 254 across
    ramp[:, 100:] = 255
    picture[..., 3] = ramp
    paint(canvas, 0, 0, picture)
    response = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 0, "y": 0, "w": 192, "h": 128})
    assert response.headers["X-Canvas-Known"] == "some"
    overlay = np.array(decode(response.data).getchannel("A"))
    region = tile_store().read_region(canvas.id, 0, 0, 192, 128)
    repainted = np.array(outpaint_mask(Image.new("L", (192, 128)), region.getchannel("A")))
    assert np.array_equal(overlay, repainted)
    assert (overlay[:, 1:100] == 255).all()  # half-transparent: alpha 2..198
    assert (overlay[:, 100:128] == 0).all() and (overlay[:, 128:] == 255).all()
    # Only half-transparent pixels: some content (not text mode), all of it repainted.
    soft = client.get(f"/canvas/{canvas.id}/unknown.png", query_string={"x": 0, "y": 0, "w": 64, "h": 64})
    assert soft.headers["X-Canvas-Known"] == "some"
    assert (np.array(decode(soft.data).getchannel("A")) == 255).all()

# ---- import, undo and redo --------------------------------------------------------------------


def import_image(client, canvas, data, filename="photo.png", **fields):
    form = {"x": 0, "y": 0, "w": 512, "h": 512, **fields, "image": (io.BytesIO(data), filename)}
    return client.post(f"/canvas/{canvas.id}/import", data=form, content_type="multipart/form-data")


def test_import_fits_the_image_in_the_frame_as_one_undo_step(client, user):
    canvas = make_canvas(user)
    pixels = noise(1024, 512, seed=5, alpha=255)
    response = import_image(client, canvas, png(pixels), x=64, y=-64, w=512, h=512)
    assert response.status_code == 200
    state = response.get_json()
    assert state["can_undo"] and not state["can_redo"]
    store = tile_store()
    assert [r.description for r in store.history(canvas.id)] == ["import of photo.png"]
    assert store.bounds(canvas.id) == (64, 64, 576, 320)  # halved to the frame's width, centred in it
    assert read(canvas, 64, 64, 512, 256)[..., 3].min() == 255
    small = make_canvas(user, "small")
    import_image(client, small, png(noise(256, 128, alpha=255)), x=64, y=-64, w=512, h=512)
    assert tile_store().bounds(small.id) == (192, 128, 448, 256)  # never enlarged: centred as it is

    undone = client.post(f"/canvas/{canvas.id}/undo").get_json()
    assert undone["changed"] and undone["head"] == 0 and undone["can_redo"]
    assert store.bounds(canvas.id) is None
    assert client.post(f"/canvas/{canvas.id}/undo").get_json()["changed"] is False
    redone = client.post(f"/canvas/{canvas.id}/redo").get_json()
    assert redone["changed"] and redone["head"] == state["head"]
    assert store.bounds(canvas.id) == (64, 64, 576, 320)


def test_import_cover_fills_the_frame_the_page_fitted_to_the_picture(client, user):
    """The page fits the frame to a 1024×768 picture (snapped to the grid) and imports with fit=cover:
    every pixel of the frame is the picture's, nothing is left for a silent outpaint."""
    canvas = make_canvas(user)
    pixels = noise(1024, 768, seed=8, alpha=255)
    response = import_image(client, canvas, png(pixels), x=0, y=0, w=1024, h=768, fit="cover")
    assert response.status_code == 200 and response.get_json()["placed"] == [0, 0, 1024, 768]
    assert np.array_equal(read(canvas, 0, 0, 1024, 768), pixels)
    # Into a square frame, cover fills it all (centred, the overflow cropped): no bars.
    square = make_canvas(user, "square")
    import_image(client, square, png(pixels), x=0, y=0, w=512, h=512, fit="cover")
    assert tile_store().bounds(square.id) == (0, 0, 512, 512)
    assert read(square, 0, 0, 512, 512)[..., 3].min() == 255
    assert import_image(client, square, png(pixels), fit="stretch").status_code == 422


def test_import_at_full_size_keeps_every_pixel(client, user):
    canvas = make_canvas(user)
    pixels = noise(700, 90, seed=6, alpha=255)
    assert import_image(client, canvas, png(pixels), x=10, y=20, keep_size="1").status_code == 200
    assert np.array_equal(read(canvas, 10, 20, 700, 90), pixels)


def test_import_accepts_jpeg_and_webp(client, user):
    canvas = make_canvas(user)
    image = Image.new("RGB", (64, 64), (10, 200, 30))
    for image_format in ("JPEG", "WEBP"):
        response = import_image(client, canvas, png(image, image_format), filename=f"x.{image_format.lower()}",
                                keep_size="1")
        assert response.status_code == 200
    assert len(tile_store().history(canvas.id)) == 2


@pytest.mark.parametrize("data, fields, status, message", [
    (b"not an image", {}, 422, "not a readable image"),
    (png(Image.new("RGB", (8, 8))), {"w": 10_000}, 422, "64 to 4096 pixels on each side"),
    (png(Image.new("RGB", (8, 8))), {"x": 2**40}, 422, "too far out"),
    (png(Image.new("RGB", (8, 8))), {"x": "left"}, 422, "whole numbers"),
    (png(Image.new("RGB", (8, 8)), "GIF"), {}, 422, "GIF images are not accepted"),
])
def test_bad_imports_are_refused_and_write_nothing(client, user, data, fields, status, message):
    canvas = make_canvas(user)
    response = import_image(client, canvas, data, **fields)
    assert response.status_code == status and message in response.get_json()["error"]
    assert tile_store().head(canvas.id) == 0


def test_an_oversized_upload_is_refused(client, user, app):
    app.config["MAX_IMAGE_UPLOAD_BYTES"] = 1024
    canvas = make_canvas(user)
    response = import_image(client, canvas, png(noise(64, 64, alpha=255)))
    assert response.status_code == 422 and "larger than" in response.get_json()["error"]
    assert tile_store().head(canvas.id) == 0


def test_an_import_over_a_change_the_page_has_not_seen_is_refused(client, user):
    canvas = make_canvas(user)
    seen = paint(canvas, 0, 0, noise(64, 64, seed=1, alpha=255))
    newer = paint(canvas, 0, 0, noise(64, 64, seed=2, alpha=255))  # e.g. from another tab
    response = import_image(client, canvas, png(noise(32, 32, alpha=255)), keep_size="1", base_revision=seen)
    assert response.status_code == 409 and "reload" in response.get_json()["error"]
    assert tile_store().head(canvas.id) == newer


# ---- export ---------------------------------------------------------------------------------


def test_export_the_whole_canvas_cropped_to_its_content(client, user):
    canvas = make_canvas(user)
    paint(canvas, -300, 100, noise(200, 150, seed=1, alpha=255))
    paint(canvas, 400, 900, noise(100, 50, seed=2, alpha=255))
    response = client.get(f"/canvas/{canvas.id}/export.png")
    assert response.status_code == 200 and response.is_streamed and response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename*=UTF-8''Test%20canvas%20-%20whole%20canvas%20800x850%20rev%202.png")
    exported = np.array(decode(response.data))
    assert exported.shape == (850, 800, 4)
    assert np.array_equal(exported, read(canvas, -300, 100, 800, 850))


def test_export_a_frame_region(client, user):
    canvas = make_canvas(user)
    pixels = noise(300, 300, seed=4, alpha=255)
    paint(canvas, 0, 0, pixels)
    response = client.get(f"/canvas/{canvas.id}/export.png", query_string={"x": 100, "y": 50, "w": 512, "h": 128})
    assert response.headers["Content-Disposition"].endswith("''Test%20canvas%20-%20region%20100%2C50%20512x128%20rev%201.png")
    exported = np.array(decode(response.data))
    assert exported.shape == (128, 512, 4)
    assert np.array_equal(exported[:, :200], pixels[50:178, 100:300]) and not exported[:, 200:].any()


def test_export_refuses_an_empty_canvas_and_an_oversized_region(client, user):
    canvas = make_canvas(user)
    empty = client.get(f"/canvas/{canvas.id}/export.png")
    assert empty.status_code == 404 and "empty" in empty.get_json()["error"]
    huge = client.get(f"/canvas/{canvas.id}/export.png", query_string={"x": 0, "y": 0, "w": 65536, "h": 65536})
    assert huge.status_code == 413 and "megapixels" in huge.get_json()["error"]


# ---- ownership ------------------------------------------------------------------------------


def test_another_users_canvas_is_not_found_on_every_route(client, user, app):
    eve = other_user()
    theirs = make_canvas(eve, "Eve's canvas")
    head = paint(theirs, 0, 0, noise(64, 64, alpha=255))
    base = f"/canvas/{theirs.id}"
    gets = [base, f"{base}/form", f"{base}/tiles?level=0&tx0=0&ty0=0&tx1=1&ty1=1", f"{base}/tiles/0/0/0/{head}.png",
            f"{base}/thumbnail.png", f"{base}/unknown.png?x=0&y=0&w=64&h=64", f"{base}/staging",
            f"{base}/export.png", f"{base}/variations/1/preview", f"{base}/bounds", f"{base}/mask",
            f"{base}/mask.png"]
    posts = [f"{base}/rename", f"{base}/delete", f"{base}/undo", f"{base}/redo", f"{base}/import", f"{base}/generate",
             f"{base}/staging/discard", f"{base}/variations/1/accept", f"{base}/variations/1/discard",
             f"{base}/variations/1/save", f"{base}/requests/1/more", f"{base}/variations/1/again", f"{base}/mask"]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, data={"name": "mine now"}).status_code == 404, url
    assert "Eve&#39;s canvas" not in client.get("/canvas/").get_data(as_text=True)
    db.session.refresh(theirs)
    assert theirs.name == "Eve's canvas" and tile_store().head(theirs.id) == head
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0


def test_the_mask_is_kept_with_the_canvas_for_its_user(client, user):
    canvas = make_canvas(user)
    assert client.get(f"/canvas/{canvas.id}/mask").get_json() == {"mask": None}
    painted = np.zeros((512, 512, 4), np.uint8)
    painted[100:200, 300:420] = 255  # as the page sends it: white where painted, transparent elsewhere
    form = {"x": 64, "y": -128, "w": 512, "h": 512, "mask": (io.BytesIO(png(painted)), "mask.png")}
    saved = client.post(f"/canvas/{canvas.id}/mask", data=form, content_type="multipart/form-data")
    assert saved.status_code == 200 and saved.get_json()["saved"]
    kept = client.get(f"/canvas/{canvas.id}/mask").get_json()["mask"]
    # Cropped to what is painted, placed where it lies on the canvas.
    assert {k: kept[k] for k in ("x", "y", "width", "height")} == {"x": 364, "y": -28, "width": 120, "height": 100}
    image = np.array(decode(client.get(kept["url"]).data))
    assert image.shape == (100, 120) and (image == 255).all()
    # An empty mask deletes it; a mask of the wrong size is refused.
    form = {"x": 64, "y": -128, "w": 512, "h": 512, "mask": (io.BytesIO(png(Image.new("L", (512, 512)))), "m.png")}
    emptied = client.post(f"/canvas/{canvas.id}/mask", data=form, content_type="multipart/form-data").get_json()
    assert (emptied["saved"], emptied["version"]) == (False, None)
    assert client.get(f"/canvas/{canvas.id}/mask").get_json() == {"mask": None}
    form = {"x": 0, "y": 0, "w": 256, "h": 256, "mask": (io.BytesIO(png(painted)), "m.png")}
    refused = client.post(f"/canvas/{canvas.id}/mask", data=form, content_type="multipart/form-data")
    assert refused.status_code == 422 and "the frame is 256×256" in refused.get_json()["error"]


def test_bounds_give_the_content_box_and_a_thumbnail(client, user):
    canvas = make_canvas(user)
    assert client.get(f"/canvas/{canvas.id}/bounds").get_json()["box"] is None
    paint(canvas, -300, 100, noise(200, 150, seed=1, alpha=255))
    body = client.get(f"/canvas/{canvas.id}/bounds").get_json()
    assert body["box"] == [-300, 100, 200, 150]
    assert client.get(body["thumbnail"]).status_code == 200


def test_canvas_pages_require_a_login(app):
    anonymous = app.test_client()
    for url in ("/canvas/", "/canvas/1", "/canvas/1/tiles/0/0/0/1.png"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
