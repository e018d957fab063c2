"""The one undo history (mask edits and canvas changes) kept per canvas and user, and the variations
kept after an accept: rows, the kept mask's pixels, tile store revisions and HTTP answers."""
import io
import zlib

import numpy as np
import pytest
from PIL import Image

from app.canvas import history
from app.canvas.models import CanvasHistory, CanvasStep, CanvasVariation
from app.canvas.staging import tile_store
from app.extensions import db
from app.gallery import Generation
from tests.canvas_helpers import decode, make_canvas, noise, paint, png, read

FILL_DEV = "black-forest-labs/flux-fill-dev"


def kept_mask(client, canvas):
    """The kept mask as a dict {(x, y): alpha} of its painted pixels' box, with its rectangle."""
    state = client.get(f"/canvas/{canvas.id}/mask").get_json()["mask"]
    if state is None:
        return None, None
    pixels = np.array(decode(client.get(state["url"]).data).convert("L"))
    return (state["x"], state["y"], state["width"], state["height"]), pixels


def push(client, canvas, box, before, after, *, label="brush stroke", version=None):
    """Push a mask step as the page does: zlib(before ‖ after), one byte a pixel."""
    x, y, width, height = box
    form = {"label": label, "x": x, "y": y, "w": width, "h": height,
            "alpha": (io.BytesIO(zlib.compress(before.tobytes() + after.tobytes())), "alpha.zlib")}
    if version is not None:
        form["version"] = version
    return client.post(f"/canvas/{canvas.id}/history/mask", data=form, content_type="multipart/form-data")


def stroke(client, canvas, row, *, version=None, label="brush stroke"):
    """A horizontal stroke 20 px high at `row` across x 0..99, on an empty part of the mask."""
    before = np.zeros((20, 100), np.uint8)
    after = np.full((20, 100), 255, np.uint8)
    return push(client, canvas, (0, row, 100, 20), before, after, version=version, label=label)


def version_of(client, canvas):
    return client.get(f"/canvas/{canvas.id}/history").get_json()["history"]["version"]


def test_two_strokes_then_undo_takes_back_exactly_the_second_and_leaves_the_canvas(client, user):
    canvas = make_canvas(user)
    head = paint(canvas, 0, 0, noise(128, 128, alpha=255))
    first = stroke(client, canvas, 0, version=0)
    assert first.status_code == 200, first.get_json()
    second = stroke(client, canvas, 50, version=first.get_json()["history"]["version"])
    assert second.get_json()["history"]["undo"] == "brush stroke"
    rect, pixels = kept_mask(client, canvas)
    assert rect == (0, 0, 100, 70) and (pixels[:20] == 255).all() and (pixels[50:70] == 255).all()

    # As after a reload: the page knows nothing but what the server keeps.
    undone = client.post(f"/canvas/{canvas.id}/undo", data={"version": version_of(client, canvas)}).get_json()
    assert undone["changed"] and undone["kind"] == "mask" and undone["undone"] == "brush stroke"
    assert undone["step"] == {"id": second.get_json()["step"], "x": 0, "y": 50, "width": 100, "height": 20}
    assert undone["head"] == head and tile_store().head(canvas.id) == head  # the canvas was not touched
    rect, pixels = kept_mask(client, canvas)
    assert rect == (0, 0, 100, 20) and (pixels == 255).all()  # the first stroke, and only it, is left
    assert undone["history"]["redo"] == "brush stroke" and undone["can_redo"]

    redone = client.post(f"/canvas/{canvas.id}/redo").get_json()
    assert redone["redone"] == "brush stroke" and redone["kind"] == "mask"
    assert kept_mask(client, canvas)[0] == (0, 0, 100, 70)


def test_mask_steps_and_canvas_changes_undo_in_one_order_newest_first(client, user):
    canvas = make_canvas(user)
    picture = noise(64, 64, seed=3, alpha=255)
    imported = client.post(f"/canvas/{canvas.id}/import", data={
        "x": 0, "y": 0, "w": 64, "h": 64, "fit": "none", "image": (io.BytesIO(png(picture)), "boat.png")},
        content_type="multipart/form-data")
    assert imported.status_code == 200
    head = imported.get_json()["head"]
    stroke(client, canvas, 0)
    labels = []
    for _ in range(3):
        answer = client.post(f"/canvas/{canvas.id}/undo").get_json()
        labels.append((answer["kind"], answer["undone"], answer["head"]))
    assert labels == [("mask", "brush stroke", head), ("canvas", "import of boat.png", 0), (None, None, 0)]
    assert not read(canvas, 0, 0, 64, 64).any()
    # Redo goes forward in the same order.
    assert client.post(f"/canvas/{canvas.id}/redo").get_json()["redone"] == "import of boat.png"
    assert np.array_equal(read(canvas, 0, 0, 64, 64), picture)
    assert client.post(f"/canvas/{canvas.id}/redo").get_json()["redone"] == "brush stroke"
    assert not client.post(f"/canvas/{canvas.id}/redo").get_json()["changed"]


def test_a_new_edit_after_undo_drops_the_redo_branch_on_the_server_too(client, user):
    canvas = make_canvas(user)
    client.post(f"/canvas/{canvas.id}/import", data={
        "x": 0, "y": 0, "w": 64, "h": 64, "fit": "none", "image": (io.BytesIO(png(noise(64, 64, alpha=255))), "a.png")},
        content_type="multipart/form-data")
    stroke(client, canvas, 0)
    client.post(f"/canvas/{canvas.id}/undo")  # the stroke
    client.post(f"/canvas/{canvas.id}/undo")  # the import
    assert tile_store().can_redo(canvas.id)
    answer = stroke(client, canvas, 40).get_json()  # a new edit: both undone steps are gone
    assert not answer["can_redo"] and answer["history"]["redo"] is None
    assert not tile_store().can_redo(canvas.id)  # the import's revision is no longer redoable
    assert not client.post(f"/canvas/{canvas.id}/redo").get_json()["changed"]
    assert tile_store().head(canvas.id) == 0
    steps = db.session.scalars(db.select(CanvasStep).where(CanvasStep.canvas_id == canvas.id)).all()
    assert [(s.kind, s.undone) for s in steps] == [("mask", False)]
    # Undo then reaches nothing older than the new stroke (the empty canvas).
    assert client.post(f"/canvas/{canvas.id}/undo").get_json()["undone"] == "brush stroke"
    assert not client.post(f"/canvas/{canvas.id}/undo").get_json()["changed"]


def test_two_tabs_one_wins_the_other_is_refused_and_nothing_is_changed(client, user):
    canvas = make_canvas(user)
    seen = version_of(client, canvas)
    winner = stroke(client, canvas, 0, version=seen)  # tab A
    assert winner.status_code == 200
    loser = stroke(client, canvas, 50, version=seen)  # tab B, which had not seen A's stroke
    body = loser.get_json()
    assert body["stale_history"] and "Another tab" in body["error"]
    # What B needs to catch up: the history and the kept mask as they are now.
    assert body["history"]["version"] == winner.get_json()["history"]["version"]
    assert (body["mask"]["x"], body["mask"]["y"], body["mask"]["height"]) == (0, 0, 20)
    assert kept_mask(client, canvas)[0] == (0, 0, 100, 20)
    assert db.session.scalar(db.select(db.func.count()).select_from(CanvasStep)) == 1
    # An undo from the stale tab is refused too (nothing undone) ...
    refused = client.post(f"/canvas/{canvas.id}/undo", data={"version": seen}).get_json()
    assert refused["stale_history"] and "changed" not in refused
    assert kept_mask(client, canvas)[0] == (0, 0, 100, 20)
    # ... and so is a whole-mask save from it; with the current version both go through.
    again = stroke(client, canvas, 50, version=body["history"]["version"])
    assert again.status_code == 200 and kept_mask(client, canvas)[0] == (0, 0, 100, 70)
    form = {"x": 0, "y": 0, "w": 128, "h": 128, "history": seen,
            "mask": (io.BytesIO(png(np.zeros((128, 128, 4), np.uint8))), "mask.png")}
    assert client.post(f"/canvas/{canvas.id}/mask", data=form, content_type="multipart/form-data").get_json()[
        "stale_history"]
    assert kept_mask(client, canvas)[0] == (0, 0, 100, 70)


def test_the_history_is_bounded_oldest_steps_forgotten_first(client, user, monkeypatch):
    monkeypatch.setattr(history, "MAX_STEPS", 5)
    canvas = make_canvas(user)
    for row in range(8):
        stroke(client, canvas, row * 20, label=f"stroke {row}")
    steps = db.session.scalars(db.select(CanvasStep).order_by(CanvasStep.seq)).all()
    assert [s.label for s in steps] == [f"stroke {row}" for row in range(3, 8)]
    undone = [client.post(f"/canvas/{canvas.id}/undo").get_json()["undone"] for _ in range(6)]
    assert undone == ["stroke 7", "stroke 6", "stroke 5", "stroke 4", "stroke 3", None]
    # Strokes 0-2 stay on the mask: they can no longer be undone, but nothing was lost.
    rect, pixels = kept_mask(client, canvas)
    assert rect == (0, 0, 100, 60) and (pixels == 255).all()

    monkeypatch.setattr(history, "MAX_STEPS", 100)
    monkeypatch.setattr(history, "MAX_BYTES", 1)  # every step is over: only the newest is kept
    stroke(client, canvas, 200, label="big")
    assert [s.label for s in db.session.scalars(db.select(CanvasStep))] == ["big"]


def test_bad_mask_steps_are_refused_with_a_reason(client, user):
    canvas = make_canvas(user)
    wrong = push(client, canvas, (0, 0, 10, 10), np.zeros(50, np.uint8), np.zeros(50, np.uint8))
    assert wrong.status_code == 422 and "not 2 × 100" in wrong.get_json()["error"]
    form = {"label": "x", "x": 0, "y": 0, "w": 10, "h": 10, "alpha": (io.BytesIO(b"not zlib"), "a")}
    garbage = client.post(f"/canvas/{canvas.id}/history/mask", data=form, content_type="multipart/form-data")
    assert garbage.status_code == 422 and "zlib" in garbage.get_json()["error"]
    # A zip bomb stops at the size the box allows.
    bomb = zlib.compress(bytes(50_000_000))
    form = {"label": "x", "x": 0, "y": 0, "w": 10, "h": 10, "alpha": (io.BytesIO(bomb), "a")}
    assert client.post(f"/canvas/{canvas.id}/history/mask", data=form,
                       content_type="multipart/form-data").status_code == 422
    form = {"label": "x", "x": 0, "y": 0, "w": 5000, "h": 10, "alpha": (io.BytesIO(bomb), "a")}
    huge = client.post(f"/canvas/{canvas.id}/history/mask", data=form, content_type="multipart/form-data")
    assert huge.status_code == 400
    assert db.session.scalar(db.select(db.func.count()).select_from(CanvasStep)) == 0


def test_steps_are_per_user_and_go_with_the_canvas(client, user, app):
    canvas = make_canvas(user)
    stroke(client, canvas, 0)
    assert db.session.scalar(db.select(CanvasHistory)).user_id == user.id
    client.post(f"/canvas/{canvas.id}/delete")
    db.session.expire_all()
    assert db.session.scalar(db.select(db.func.count()).select_from(CanvasStep)) == 0
    assert db.session.scalar(db.select(db.func.count()).select_from(CanvasHistory)) == 0


# ---- variations kept after an accept ------------------------------------------------------------


def generate_three(client, canvas, run_jobs):
    mask = np.zeros((512, 512), np.uint8)
    mask[100:300, 100:300] = 255
    form = {"model": FILL_DEV, "prompt": "a red boat", "frame_x": 0, "frame_y": 0, "frame_w": 512,
            "frame_h": 512, "infill": "telea", "mask_blur": 4, "num_outputs": 3, "seed": 5,
            "mask": (io.BytesIO(png(mask)), "mask.png")}
    assert client.post(f"/canvas/{canvas.id}/generate", data=form,
                       content_type="multipart/form-data").status_code == 200
    run_jobs()
    return client.get(f"/canvas/{canvas.id}/staging").get_json()["variations"]


def test_after_accepting_2_of_3_all_three_stay_and_3_can_be_saved_or_accepted_instead(client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    first, second, third = generate_three(client, canvas, run_jobs)
    accepted = client.post(second["accept"]).get_json()
    assert accepted["accepted"] == "Accepted variation 2."
    shown = {v["id"]: v["state"] for v in accepted["variations"]}
    assert shown == {first["id"]: "set aside", second["id"]: "accepted", third["id"]: "set aside"}
    assert all(v["accepted_id"] == second["id"] for v in accepted["variations"])
    head = accepted["head"]
    with_second = read(canvas, 0, 0, 512, 512)

    # A reload shows them the same way.
    states = {v["id"]: v["state"] for v in client.get(f"/canvas/{canvas.id}/staging").get_json()["variations"]}
    assert states == shown
    # Save #3 to the gallery: a Generation row in the gallery, #3 still kept.
    saved = client.post(third["save"])
    assert saved.status_code == 200
    variation = db.session.get(CanvasVariation, third["id"])
    generation = db.session.get(Generation, variation.generation_id)
    assert generation.in_gallery and generation.output_index == 2
    assert "a red boat" in client.get("/gallery").get_data(as_text=True)

    # Accepting a set-aside one without saying "instead" is refused (another tab accepted first) ...
    refused = client.post(third["accept"])
    assert refused.status_code == 409 and refused.get_json()["already_accepted"]
    # ... with "instead", #2's accept is undone and #3 pasted over the same pixels: one step, not two.
    instead = client.post(third["accept"], data={"instead": second["id"]})
    assert instead.status_code == 200, instead.get_json()
    assert instead.get_json()["accepted"] == "Accepted variation 3 instead."
    states = {v["id"]: v["state"] for v in instead.get_json()["variations"]}
    assert states == {first["id"]: "set aside", second["id"]: "set aside", third["id"]: "accepted"}
    with_third = read(canvas, 0, 0, 512, 512)
    assert not np.array_equal(with_third, with_second)
    assert tile_store().head(canvas.id) == head + 1
    labels = [s.label for s in db.session.scalars(db.select(CanvasStep).order_by(CanvasStep.seq))]
    assert labels == ["accept of variation 3 (a red boat)"]
    # Undo takes #3 back and stages all three again; the canvas is as before any accept.
    undone = client.post(f"/canvas/{canvas.id}/undo").get_json()
    assert undone["undone"] == "accept of variation 3 (a red boat)"
    assert {v["state"] for v in undone["variations"]} == {"staged"}
    assert np.array_equal(read(canvas, 0, 0, 512, 512), noise(512, 512, seed=1, alpha=255))


def test_discarding_kept_variations_removes_them_and_their_files(client, user, run_jobs, app):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    first, second, third = generate_three(client, canvas, run_jobs)
    client.post(second["accept"])
    data_dir = app.config["DATA_DIR"]
    left = client.post(first["discard"]).get_json()["variations"]
    assert [v["id"] for v in left] == [second["id"], third["id"]]
    gone = db.session.get(CanvasVariation, first["id"])
    assert gone.status == CanvasVariation.DISCARDED
    assert client.post(first["save"]).status_code == 410  # its output went with it
    # The accepted one can be discarded from the strip too: the canvas keeps it.
    on_canvas = read(canvas, 0, 0, 512, 512)
    assert client.post(second["discard"]).status_code == 200
    assert np.array_equal(read(canvas, 0, 0, 512, 512), on_canvas)
    # Undoing that accept still stages what is left (#3), and the discarded ones stay discarded.
    undone = client.post(f"/canvas/{canvas.id}/undo").get_json()
    assert [(v["id"], v["state"]) for v in undone["variations"]] == [(third["id"], "staged")]
    assert client.post(f"/canvas/{canvas.id}/staging/discard").get_json()["variations"] == []
    from pathlib import Path

    assert not list((Path(data_dir) / "canvas-staging" / str(canvas.id)).glob("*/*.webp"))


def test_accept_instead_is_refused_once_the_canvas_changed_after_the_accept(client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    _, second, third = generate_three(client, canvas, run_jobs)
    client.post(second["accept"])
    client.post(f"/canvas/{canvas.id}/import", data={
        "x": 600, "y": 0, "w": 64, "h": 64, "fit": "none", "image": (io.BytesIO(png(noise(64, 64, alpha=255))), "b.png")},
        content_type="multipart/form-data")
    head = tile_store().head(canvas.id)
    refused = client.post(third["accept"], data={"instead": second["id"]})
    assert refused.status_code == 409 and "undo back to that accept" in refused.get_json()["error"]
    assert tile_store().head(canvas.id) == head


@pytest.mark.parametrize("size", [(1, 1), (300, 7)])
def test_a_mask_step_round_trips_any_box_exactly(client, user, size):
    canvas = make_canvas(user)
    width, height = size
    after = np.random.default_rng(0).integers(0, 256, (height, width), dtype=np.uint8)
    stroke_answer = push(client, canvas, (-40, 17, width, height), np.zeros((height, width), np.uint8), after)
    assert stroke_answer.status_code == 200
    rect, pixels = kept_mask(client, canvas)
    box = Image.fromarray(after).getbbox()
    assert rect[:2] == (-40 + box[0], 17 + box[1])
    assert np.array_equal(pixels, after[box[1]:box[3], box[0]:box[2]])
    client.post(f"/canvas/{canvas.id}/undo")
    assert kept_mask(client, canvas) == (None, None)
