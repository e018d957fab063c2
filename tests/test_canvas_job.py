"""Generating into the frame against the fake Replicate: inpaint, outpaint, text to image, staging, accept."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.canvas.compose import BLUR_REACH, grown_mask, paste_mask
from app.canvas.models import CanvasRequest, CanvasVariation
from app.canvas.pipeline import finish_variation
from app.canvas.staging import tile_store
from app.extensions import db
from app.gallery import Generation
from app.models import Job
from tests.fake_replicate import fill_colour
from tests.canvas_helpers import decode, make_canvas, noise, paint, png, read

FILL_DEV = "black-forest-labs/flux-fill-dev"
SCHNELL = "black-forest-labs/flux-schnell"
SD_INPAINTING = ("stability-ai/stable-diffusion-inpainting:"
                 "e5a34f913de0adc560d20e002c45ad43a80031b62caacc3d84010c6b6a64870c")


def square_mask(size, start, stop):
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[start:stop, start:stop] = 255
    return mask


def generate(client, canvas, frame, mask=None, **fields):
    x, y, width, height = frame
    form = {"model": FILL_DEV, "prompt": "a red boat", "frame_x": x, "frame_y": y, "frame_w": width,
            "frame_h": height, "infill": "telea", "mask_blur": 8, **fields}
    if mask is not None:
        form["mask"] = (io.BytesIO(mask if isinstance(mask, bytes) else png(mask)), "mask.png")
    return client.post(f"/canvas/{canvas.id}/generate", data=form, content_type="multipart/form-data")


def creates(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


def sent_image(fake, request, name):
    """An image input of a recorded prediction (a data URI or a files-API URL of the fake)."""
    return decode(fake._input_file_bytes(request.json["input"][name]))


def staged(client, canvas):
    return client.get(f"/canvas/{canvas.id}/staging").get_json()["variations"]


def test_inpaint_stages_every_variation_and_accept_changes_only_masked_pixels(client, user, run_jobs, fake_replicate, app):
    canvas = make_canvas(user)
    before_all = noise(1024, 1024, seed=1, alpha=255)
    paint(canvas, -256, -256, before_all)
    painted = square_mask((512, 512), 128, 384)
    response = generate(client, canvas, (0, 0, 512, 512), painted, num_outputs=2, seed=42)
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.get_data(as_text=True)
    job = db.session.scalar(db.select(Job))
    assert job.kind == "canvas.generate"

    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED, job.error
    [create] = creates(fake_replicate)
    assert create.path == f"/v1/models/{FILL_DEV}/predictions"
    assert create.json["input"]["prompt"] == "a red boat" and create.json["input"]["num_outputs"] == 2
    image, mask = sent_image(fake_replicate, create, "image"), sent_image(fake_replicate, create, "mask")
    assert image.size == mask.size == (512, 512)
    assert np.array_equal(np.array(image.convert("RGB")), before_all[256:768, 256:768, :3])
    # White repaints, as FLUX Fill expects; what was painted, grown by one latent cell, never shrunk.
    sent_mask = np.array(mask.convert("L"))
    assert np.array_equal(sent_mask, np.array(grown_mask(Image.fromarray(painted), (512, 512))))
    assert (sent_mask[painted > 0] == 255).all() and (sent_mask[120:392, 128:384] == 255).all()
    assert (sent_mask[:110] == 0).all()

    variations = staged(client, canvas)
    assert [v["index"] for v in variations] == [0, 1]
    assert all(v["x"] == 0 and v["width"] == 512 and v["seed"] == 42 for v in variations)
    generations = db.session.scalars(db.select(Generation).order_by(Generation.output_index)).all()
    assert [g.in_gallery for g in generations] == [False, False]
    assert "a red boat" not in client.get("/gallery").get_data(as_text=True)
    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert "data-canvas-staged" in status and "2 variations" in status

    preview = client.get(variations[1]["preview"])
    assert preview.status_code == 200 and preview.headers["Cache-Control"].endswith("immutable")
    before = read(canvas, -256, -256, 1024, 1024)
    accepted = client.post(variations[1]["accept"])
    assert accepted.status_code == 200
    state = accepted.get_json()
    # Nothing is staged any more; both stay shown, kept until discarded: the accepted one and the other.
    assert [(v["index"], v["state"]) for v in state["variations"]] == [(0, "set aside"), (1, "accepted")]
    assert state["can_undo"]
    after = read(canvas, -256, -256, 1024, 1024)

    weight = np.zeros((1024, 1024), np.uint8)
    weight[256:768, 256:768] = np.array(paste_mask(Image.fromarray(painted), 8))
    outside = weight == 0
    assert outside.sum() > 1024 * 1024 - 400 * 400
    assert np.array_equal(after[outside], before[outside])  # bit-identical outside the blend ring
    colour = fill_colour(42, 1)
    inside = weight == 255
    repainted = np.zeros((1024, 1024), bool)
    repainted[256:768, 256:768] = painted > 0
    assert inside[repainted].all()  # every painted pixel is replaced in full
    assert (after[inside][:, :3] == colour).all() and (after[inside][:, 3] == 255).all()
    # Along the ring outside the painted square, a blend of the old pixel and the result.
    edge = (weight > 20) & (weight < 235) & ~repainted
    assert edge.sum() > 1000
    between = [(np.minimum(before[edge][:, c], colour[c]) <= after[edge][:, c])
               & (after[edge][:, c] <= np.maximum(before[edge][:, c], colour[c])) for c in range(3)]
    assert np.all(between)
    # The model repainted the grown mask: there the ring blends its new pixels in; beyond it the
    # model gave the picture back and the blend keeps it.
    model_repainted = np.zeros((1024, 1024), bool)
    model_repainted[256:768, 256:768] = sent_mask > 0
    assert (after[edge & model_repainted] != before[edge & model_repainted]).any(axis=1).mean() > 0.95
    assert (after[edge][:, :3] != colour).any(axis=1).mean() > 0.95
    assert np.array_equal(np.array(decode(preview.data).convert("RGBA")), after[256:768, 256:768])  # the preview showed it exactly

    store = tile_store()
    assert [r.description for r in store.history(canvas.id)][-1] == "accept of variation 2 (a red boat)"
    variation_rows = db.session.scalars(db.select(CanvasVariation).order_by(CanvasVariation.output_index)).all()
    # The other variation is set aside, not thrown away: its files stay for an undo.
    assert [v.status for v in variation_rows] == ["staged", "accepted"]
    data_dir = Path(app.config["DATA_DIR"])
    assert (data_dir / variation_rows[0].preview_path).exists()
    assert db.session.get(Generation, generations[0].id) is not None
    # Both can still be saved to the gallery, the accepted one and the one set aside.
    for variation in variations:
        assert client.post(variation["save"]).status_code == 200

    undone = client.post(f"/canvas/{canvas.id}/undo").get_json()
    assert undone["undone"] == "accept of variation 2 (a red boat)"
    assert np.array_equal(read(canvas, -256, -256, 1024, 1024), before)  # undo restores every pixel
    assert [v["id"] for v in undone["variations"]] == [v["id"] for v in variations]  # both staged again
    redone = client.post(f"/canvas/{canvas.id}/redo").get_json()
    assert redone["redone"] == "accept of variation 2 (a red boat)"
    # Nothing staged after the redo: the two are kept, accepted and set aside, as after the accept.
    assert [(v["index"], v["state"]) for v in redone["variations"]] == [(0, "set aside"), (1, "accepted")]
    assert np.array_equal(read(canvas, -256, -256, 1024, 1024), after)


def test_outpaint_masks_the_unknown_area_by_itself(client, user, run_jobs, fake_replicate):
    canvas = make_canvas(user)
    left = noise(256, 512, seed=2, alpha=255)
    paint(canvas, 0, 0, left)
    response = generate(client, canvas, (0, 0, 512, 512), mask=None, seed=7, mask_blur=0)
    assert response.status_code == 200
    run_jobs()
    [create] = creates(fake_replicate)
    mask = np.array(sent_image(fake_replicate, create, "mask").convert("L"))
    assert (mask[:, :248] == 0).all() and (mask[:, 248:] == 255).all()  # grown by one latent cell
    image = np.array(sent_image(fake_replicate, create, "image").convert("RGB"))
    assert np.array_equal(image[:, :256], left[..., :3])
    assert image[:, 256:].mean() > 20  # the empty half was infilled (Telea), not sent black

    [variation] = staged(client, canvas)
    assert client.post(variation["accept"]).status_code == 200
    after = read(canvas, 0, 0, 512, 512)
    assert np.array_equal(after[:, :256], left)
    assert (after[:, 256:, :3] == fill_colour(7, 0)).all() and (after[:, 256:, 3] == 255).all()


def test_outpaint_with_a_blur_fades_into_the_picture_but_fills_the_empty_area_completely(client, user, run_jobs, app):
    canvas = make_canvas(user)
    left = noise(256, 512, seed=3, alpha=255)
    paint(canvas, 0, 0, left)
    generate(client, canvas, (0, 0, 512, 512), seed=8, mask_blur=16)
    run_jobs()
    request = db.session.scalar(db.select(CanvasRequest))
    with Image.open(Path(app.config["DATA_DIR"]) / request.paste_mask_path) as paste_file:
        paste = np.array(paste_file)
    reach = BLUR_REACH * 16
    assert (paste[:, :256 - reach] == 0).all() and (paste[:, 256:] == 255).all()
    # The seam fades over the picture's edge, outside what is outpainted.
    assert ((paste[:, 256 - reach + 3:250] > 0) & (paste[:, 256 - reach + 3:250] < 255)).all()
    [variation] = staged(client, canvas)
    client.post(variation["accept"])
    after = read(canvas, 0, 0, 512, 512)
    assert np.array_equal(after[:, :180], left[:, :180])  # beyond the blur's reach: untouched
    assert (after[:, 256:, :3] == fill_colour(8, 0)).all()
    assert (after[:, 256:, 3] == 255).all()  # no half-transparent fringe where the canvas was empty


def test_an_empty_frame_is_drawn_by_a_text_to_image_model(client, user, run_jobs, fake_replicate):
    canvas = make_canvas(user)
    response = generate(client, canvas, (128, 0, 768, 512), mask=None, seed=11, num_outputs=2,
                        num_inference_steps=28, guidance=30)
    assert response.status_code == 200
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.SUCCEEDED, job.error
    [create] = creates(fake_replicate)
    assert create.path == f"/v1/models/{SCHNELL}/predictions"
    sent = create.json["input"]
    assert sent["prompt"] == "a red boat" and sent["seed"] == 11 and sent["num_outputs"] == 2
    assert sent["aspect_ratio"] == "3:2"
    assert "image" not in sent and "mask" not in sent
    assert "num_inference_steps" not in sent and "guidance" not in sent  # schnell allows 4 steps, has no guidance
    request = db.session.scalar(db.select(CanvasRequest))
    assert request.mode == "text" and request.model_used == SCHNELL

    variations = staged(client, canvas)
    assert len(variations) == 2
    client.post(variations[0]["accept"])
    after = read(canvas, 128, 0, 768, 512)
    assert (after[..., :3] == fill_colour(11, 0)).all() and (after[..., 3] == 255).all()
    assert tile_store().bounds(canvas.id) == (128, 0, 896, 512)


def test_a_model_with_width_and_height_menus_gets_a_size_from_them(client, user, run_jobs, fake_replicate):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(640, 448, seed=4, alpha=255))
    painted = np.zeros((448, 640), np.uint8)
    painted[100:200, 100:300] = 255
    response = generate(client, canvas, (0, 0, 640, 448), painted, model=SD_INPAINTING, seed=5)
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    [create] = creates(fake_replicate)
    sent = create.json["input"]
    assert (sent["width"], sent["height"]) == (640, 448)
    assert sent_image(fake_replicate, create, "image").size == (640, 448)
    [variation] = staged(client, canvas)
    client.post(variation["accept"])
    assert (read(canvas, 150, 120, 100, 60)[..., :3] == fill_colour(5, 0)).all()


def test_a_stale_accept_is_refused_until_the_user_accepts_anyway(client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    generate(client, canvas, (0, 0, 512, 512), square_mask((512, 512), 100, 200), seed=3)
    run_jobs()
    [variation] = staged(client, canvas)
    newer = paint(canvas, 50, 50, noise(100, 100, seed=9, alpha=255))  # another tab changed the frame meanwhile
    before = read(canvas, 0, 0, 512, 512)

    refused = client.post(variation["accept"])
    assert refused.status_code == 409
    body = refused.get_json()
    assert body["stale"] and "Accept anyway" in body["error"]
    assert tile_store().head(canvas.id) == newer and np.array_equal(read(canvas, 0, 0, 512, 512), before)
    assert len(staged(client, canvas)) == 1  # still staged, to accept anyway or discard

    forced = client.post(variation["accept"], data={"force": "1"})
    assert forced.status_code == 200 and forced.get_json()["head"] > newer
    assert (read(canvas, 150, 150, 10, 10)[..., :3] == fill_colour(3, 0)).all()


def test_a_change_elsewhere_does_not_make_an_accept_stale(client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    generate(client, canvas, (0, 0, 512, 512), square_mask((512, 512), 100, 200), seed=3)
    run_jobs()
    [variation] = staged(client, canvas)
    paint(canvas, 5000, 5000, noise(64, 64, alpha=255))
    assert client.post(variation["accept"]).status_code == 200


def test_discard_save_and_generate_more(client, user, run_jobs, fake_replicate, app):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    generate(client, canvas, (0, 0, 512, 512), square_mask((512, 512), 100, 300), seed=3, num_outputs=3)
    run_jobs()
    first, second, third = staged(client, canvas)

    saved = client.post(second["save"])
    assert saved.status_code == 200 and saved.get_json()["saved"]
    kept = db.session.scalar(db.select(Generation).where(Generation.output_index == 1))
    assert kept.in_gallery
    assert f'href="/gallery/{kept.id}"' in client.get("/gallery").get_data(as_text=True)

    remaining = client.post(first["discard"]).get_json()["variations"]
    assert [v["id"] for v in remaining] == [second["id"], third["id"]]
    assert client.post(first["accept"]).status_code == 409  # no longer staged

    more = client.post(second["more"])
    assert more.status_code == 200 and 'class="job"' in more.get_data(as_text=True)
    run_jobs()
    second_create = creates(fake_replicate)[1]
    assert second_create.json["input"]["seed"] != 3 and second_create.json["input"]["prompt"] == "a red boat"
    assert np.array_equal(np.array(sent_image(fake_replicate, second_create, "mask").convert("L")),
                          np.array(grown_mask(Image.fromarray(square_mask((512, 512), 100, 300)), (512, 512))))
    assert len(staged(client, canvas)) == 5

    assert client.post(f"/canvas/{canvas.id}/staging/discard").get_json()["variations"] == []
    assert staged(client, canvas) == []
    assert db.session.get(Generation, kept.id) is not None  # saved to the gallery: kept
    assert not list((Path(app.config["DATA_DIR"]) / "canvas-staging" / str(canvas.id)).glob("*/preview-*.webp"))
    assert tile_store().head(canvas.id) == 1  # nothing was pasted


def test_colour_match_moves_a_drifted_result_back_to_the_surroundings():
    """Models shift colours a little across the whole image; matched on the ring around the mask, the
    repainted area follows the picture's colours instead of the drift."""
    rng = np.random.default_rng(0)
    region = np.full((256, 256, 4), 255, np.uint8)
    region[..., :3] = 90 + rng.integers(0, 20, (256, 256, 3), dtype=np.uint8)
    repaint = np.zeros((256, 256), np.uint8)
    repaint[96:160, 96:160] = 255
    drifted = region[..., :3].astype(int) + (40, -30, 25)  # the model's tint, everywhere
    drifted[96:160, 96:160] += 10  # and what it painted
    result = Image.fromarray(drifted.clip(0, 255).astype(np.uint8))
    paste = Image.fromarray(repaint)
    plain, _ = finish_variation(Image.fromarray(region), result, paste, colour_match=False)
    matched, preview = finish_variation(Image.fromarray(region), result, paste, colour_match=True)
    inside = np.array(matched)[100:156, 100:156].astype(int)
    expected = region[100:156, 100:156, :3].astype(int) + 10
    assert np.abs(inside.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 3
    assert np.abs(np.array(plain)[100:156, 100:156].astype(int).mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() > 20
    outside = repaint == 0
    assert np.array_equal(np.array(preview)[outside], region[outside])  # the preview keeps the rest exactly


@pytest.mark.parametrize("fields, mask, message", [
    ({}, square_mask((100, 100), 0, 50), "Mask is 100×100, the frame is 512×512"),
    ({}, b"not a png", "not a readable image"),
    ({}, png(Image.new("L", (512, 512)), "JPEG"), "must be a PNG"),
    ({"frame_w": 2048, "frame_h": 2048}, None, "takes at most 2.07 MP"),
    ({"frame_w": 32}, None, "64 to 4096 pixels"),
    ({"frame_x": 2**40}, None, "too far out"),
    ({"frame_x": ""}, None, "Give the frame's position and size"),
    ({"num_outputs": 9}, None, "Must be at most 4"),
    ({"mask_blur": 99}, None, "from 0 to 64"),
    ({"infill": "lama"}, None, "infill methods offered"),
    ({}, None, "Nothing to repaint"),
    ({"model": SCHNELL}, square_mask((512, 512), 0, 50), "can only draw into an empty frame"),
])
def test_bad_requests_are_refused_in_the_form_and_queue_nothing(client, user, fake_replicate, fields, mask, message):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, alpha=255))
    response = generate(client, canvas, (0, 0, 512, 512), mask, **fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and message in page.replace("&#39;", "'")
    assert response.headers["HX-Retarget"] == "#canvas-form"
    assert 'value="a red boat"' in page or ">a red boat<" in page  # nothing typed is lost
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert db.session.scalar(db.select(db.func.count(CanvasRequest.id))) == 0
    assert creates(fake_replicate) == []


def test_a_job_whose_canvas_was_deleted_fails_with_a_message(client, user, run_jobs):
    canvas = make_canvas(user)
    generate(client, canvas, (0, 0, 512, 512), seed=1)
    client.post(f"/canvas/{canvas.id}/delete")
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED and job.error == "The canvas was deleted."


def test_a_failed_prediction_can_be_retried_and_stages_once(client, user, run_jobs, fake_replicate):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, alpha=255))
    fake_replicate.next_outcome = "failed"
    generate(client, canvas, (0, 0, 512, 512), square_mask((512, 512), 0, 100), seed=1)
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED and "The model failed on Replicate" in job.error
    assert staged(client, canvas) == []
    assert client.post(f"/jobs/{job.id}/retry").status_code == 200
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED and len(staged(client, canvas)) == 1


def test_the_form_remembers_the_last_request(client, user, run_jobs):
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(64, 64, alpha=255))
    generate(client, canvas, (-512, 256, 768, 512), prompt="misty pines", seed=1, mask_blur=12, colour_match="1")
    page = client.get(f"/canvas/{canvas.id}").get_data(as_text=True)
    assert "misty pines" in page and 'name="frame_x" value="-512"' in page and 'name="frame_w" value="768"' in page
    assert 'value="12"' in page and 'name="colour_match" value="1" checked' in page
    assert 'name="seed" value="1"' not in page  # a new seed each time unless the user sets one


def test_a_generation_under_way_shows_its_progress_again_after_a_reload(client, user):
    canvas = make_canvas(user)
    generate(client, canvas, (0, 0, 512, 512), seed=1)
    job = db.session.scalar(db.select(Job))
    page = client.get(f"/canvas/{canvas.id}").get_data(as_text=True)
    assert f'id="job-{job.id}"' in page and 'hx-trigger="every 1s"' in page
    other = make_canvas(user, "other")
    assert f'id="job-{job.id}"' not in client.get(f"/canvas/{other.id}").get_data(as_text=True)


def test_make_again_reproduces_that_output_exactly(client, user, run_jobs, fake_replicate):
    """'seed S, output i of N': the model draws all N outputs from the seed, so output i is made again by
    the same input and seed — and only it is staged."""
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(512, 512, seed=1, alpha=255))
    generate(client, canvas, (0, 0, 512, 512), square_mask((512, 512), 100, 300), seed=5, num_outputs=3)
    run_jobs()
    variations = staged(client, canvas)
    assert [v["label"] for v in variations] == ["seed 5, output 1 of 3", "seed 5, output 2 of 3",
                                                "seed 5, output 3 of 3"]
    second = variations[1]
    assert client.post(second["again"]).status_code == 200
    run_jobs()
    first_create, again_create = creates(fake_replicate)
    assert again_create.json["input"]["seed"] == 5 and again_create.json["input"]["num_outputs"] == 3
    [remade] = [v for v in staged(client, canvas) if v["request"] != second["request"]]
    assert remade["label"] == "seed 5, output 2 of 3"
    assert np.array_equal(np.array(decode(client.get(remade["preview"]).data)),
                          np.array(decode(client.get(second["preview"]).data)))
