"""The LoRA loop against the fake Replicate: dataset → pre-flight → zip upload → training → LoRA listed →
a generation and a canvas inpaint with it; and the ways it can go wrong."""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.extensions import db
from app.gallery import Generation
from app.loras.models import Lora
from app.models import Job
from app.replicate.trainers import FLUX_LORA_TRAINER
from tests.canvas_helpers import make_canvas, noise, paint, png
from tests.datasets_helpers import open_dataset, save_image, user_root
from tests.fake_replicate import ACCOUNT

CAPTIONS = {f"img{n:02d}.png": f"tok, a red cat {n}" for n in range(12)}
LORA_MODEL = "black-forest-labs/flux-dev-lora"


@pytest.fixture(autouse=True)
def poll_at_once(app):
    """A training job defers itself between looks; here the next look is queued at once, so one burst
    worker runs the training to its end (the fake moves one state per look)."""
    app.config["LORA_POLL_SECONDS"] = 0


@pytest.fixture(autouse=True)
def flux_dev_lora(fake_replicate, app):
    """flux-dev-lora (its inputs are those of a trained version) on the fake, and usable in Generate."""
    from app.replicate.presets import preset_for
    from app.replicate.trainers import FLUX_LORA_TRAINER_SCHEMA
    if preset_for(LORA_MODEL) is None:  # until the presets ship it
        schemas = {k: v for k, v in FLUX_LORA_TRAINER_SCHEMA["components"]["schemas"].items()
                   if not k.startswith("Training")}
        properties = dict(schemas["Input"]["properties"])
        properties["lora_weights"] = {"type": "string", "title": "Lora Weights", "x-order": 3}
        schemas["Input"] = {**schemas["Input"], "properties": properties}
        fake_replicate.add_model(LORA_MODEL, {**FLUX_LORA_TRAINER_SCHEMA, "components": {"schemas": schemas}})


def training_folder(app, name: str, captions: dict, side: int = 512) -> Path:
    """Images at a side the trainer works at (make_folder's are thumbnails), with their captions."""
    root = user_root(app) / name
    for number, (image, caption) in enumerate(captions.items()):
        save_image(root / image, (number * 20 % 256, 80, 160), (side, side))
        if caption is not None:
            (root / image).with_suffix(".txt").write_text(caption, encoding="utf-8")
    return root


@pytest.fixture
def dataset(client, run_jobs, app):
    folder = training_folder(app, "cats", CAPTIONS)
    dataset = open_dataset(client, run_jobs, folder)
    dataset.trigger = "tok"
    db.session.commit()
    return dataset


def train_form(**overrides) -> dict:
    form = {"scope": "all", "destination": "cat-lora", "trainer": FLUX_LORA_TRAINER, "trigger_word": "tok",
            "steps": "100", "lora_rank": "16", "resolution": "512,768,1024", "add_trigger_shown": "1",
            "add_trigger": "1", "learning_rate": "0.0004", "batch_size": "1", "optimizer": "adamw8bit",
            "caption_dropout_rate": "0.05"}
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def start_training(client, dataset, **overrides):
    return client.post(f"/loras/train/{dataset.id}/start", data=train_form(**overrides), headers={"HX-Request": "true"})


def only_lora() -> Lora:
    db.session.expire_all()
    return db.session.scalars(db.select(Lora)).one()


def test_the_train_page_is_the_trainers_form_with_the_trigger_and_a_clean_check(client, dataset):
    page = client.get(f"/loras/train/{dataset.id}").get_data(as_text=True)
    assert 'name="steps"' in page and 'name="lora_rank"' in page and 'name="input_images"' not in page
    assert 'id="in-trigger_word" name="trigger_word" value="tok"' in page
    assert 'value="cats-lora"' in page  # a destination name made from the dataset's
    assert "No problems found in 12 images." in page
    assert "Steps</dt><dd>1,000" in page and "LoRA rank</dt><dd>16" in page and "Images</dt><dd>12" in page


def test_the_whole_loop(client, run_jobs, dataset, fake_replicate, app):
    response = start_training(client, dataset)
    assert response.status_code == 204, response.get_data(as_text=True)
    lora = only_lora()
    assert response.headers["HX-Redirect"] == f"/loras/{lora.id}"
    assert lora.status == Lora.PREPARING and lora.training_id is None
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.READY, (lora.error, db.session.get(Job, lora.job_id).error)
    # The zip went through the files API, with the dataset's captions at its root, trigger first.
    [training_id] = fake_replicate.trainings
    assert lora.training_id == training_id
    assert fake_replicate.training_zip(training_id) == {name: caption for name, caption in CAPTIONS.items()}
    [create] = fake_replicate.requests_to("POST", f"/v1/models/{FLUX_LORA_TRAINER}/versions/")
    assert create.json["destination"] == f"{ACCOUNT}/cat-lora"
    assert create.json["input"]["steps"] == 100 and create.json["input"]["trigger_word"] == "tok"
    assert create.json["input"]["autocaption"] is False
    # A private destination was created under the token's account.
    [model_create] = [r for r in fake_replicate.requests_to("POST", "/v1/models") if r.path == "/v1/models"]
    assert model_create.json["owner"] == ACCOUNT and model_create.json["visibility"] == "private"
    # The training was created once however many times the job ran.
    assert len(fake_replicate.requests_to("POST", "/v1/models/ostris")) == 1
    job = db.session.get(Job, lora.job_id)
    assert job.status == "succeeded" and job.attempts == 1
    # What the LoRA keeps: the version, a reference, the weights, the captions snapshot.
    assert lora.version.startswith(f"{ACCOUNT}/cat-lora:")
    assert lora.reference == lora.version.replace(":", "/")
    weights = Path(app.config["DATA_DIR"]) / lora.weights_path
    assert weights.read_bytes()[8:9] == b"{"
    assert client.get(f"/loras/{lora.id}/lora.safetensors").data == weights.read_bytes()
    snapshot = json.loads((Path(app.config["DATA_DIR"]) / lora.captions_path).read_text())
    assert snapshot["img03.png"] == "tok, a red cat 3"
    assert lora.progress["step"] == 100 and lora.progress["losses"]
    listing = client.get("/loras/").get_data(as_text=True)
    assert "cat-lora" in listing and "Ready to use (1)" in listing
    page = client.get(f"/loras/{lora.id}").get_data(as_text=True)
    assert "<svg" in page and "img03.png" in page and "tok, a red cat 3" in page
    # Generate with it: the picker fills lora_weights/lora_scale and the trigger goes into the prompt.
    add_lora_model(client)
    response = client.post("/generate", data={"model": LORA_MODEL, "prompt": "a cat on a mat",
                                              "lora_1": str(lora.id), "lora_1_scale": "0.8", "seed": "7"})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    [prediction] = fake_replicate.requests_to("POST", "/v1/models/black-forest-labs/flux-dev-lora/predictions")
    assert prediction.json["input"]["lora_weights"] == lora.reference
    assert prediction.json["input"]["lora_scale"] == 0.8
    assert prediction.json["input"]["prompt"] == "tok, a cat on a mat"
    generation = db.session.scalars(db.select(Generation)).one()
    assert generation.loras == [{"id": lora.id, "name": "cat-lora", "reference": lora.reference, "scale": 0.8,
                                 "slot": 0}]
    png = Image.open(Path(app.config["DATA_DIR"]) / generation.path)
    assert "<lora:cat-lora:0.8>" in png.text["parameters"].splitlines()[0]
    # Or run the trained version itself: it joins the user's models and opens on Generate.
    response = client.post(f"/loras/{lora.id}/run")
    assert response.status_code == 303 and "prompt=tok" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "cat-lora (trained LoRA)" in page and 'name="lora_scale"' in page


def add_lora_model(client):
    from app.replicate.presets import preset_for
    if preset_for(LORA_MODEL) is None:
        assert client.post("/models", data={"ref": LORA_MODEL, "kind": "text-to-image"}).status_code == 200


def test_a_canvas_inpaint_sends_the_lora(client, run_jobs, fake_replicate, app, user):
    lora = Lora(user_id=user.id, name="ink", source="replicate", status=Lora.READY, trigger="INKSTYLE",
                reference="fofr/ink")
    db.session.add(lora)
    db.session.commit()
    fake_replicate.add_model("fofr/ink", {"components": {"schemas": {}}})
    canvas = make_canvas(user)
    paint(canvas, 0, 0, noise(256, 256, seed=3, alpha=255))
    page = client.get(f"/canvas/{canvas.id}").get_data(as_text=True)
    assert 'name="lora_1"' in page and ">ink (INKSTYLE)</option>" in page  # flux-fill-dev takes lora_weights
    mask = np.zeros((256, 256), np.uint8)
    mask[64:192, 64:192] = 255
    response = client.post(f"/canvas/{canvas.id}/generate", content_type="multipart/form-data", data={
        "model": "black-forest-labs/flux-fill-dev", "prompt": "a boat", "frame_x": 0, "frame_y": 0,
        "frame_w": 256, "frame_h": 256, "infill": "telea", "mask_blur": 4, "seed": 5,
        "mask": (io.BytesIO(png(mask)), "mask.png"), "lora_1": str(lora.id), "lora_1_scale": "0.6"})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    [prediction] = fake_replicate.requests_to("POST", "/v1/models/black-forest-labs/flux-fill-dev/predictions")
    assert prediction.json["input"]["lora_weights"] == "fofr/ink"
    assert prediction.json["input"]["lora_scale"] == 0.6
    assert prediction.json["input"]["prompt"] == "INKSTYLE, a boat"
    generation = db.session.scalars(db.select(Generation)).one()
    assert generation.loras == [{"id": lora.id, "name": "ink", "reference": "fofr/ink", "scale": 0.6, "slot": 0}]
    assert "<lora:ink:0.6>" in Image.open(Path(app.config["DATA_DIR"]) / generation.path).text["parameters"]
    # An unknown LoRA reference fails the prediction the way Replicate's model would.
    lora.reference = "nobody/missing"
    db.session.commit()
    client.post(f"/canvas/{canvas.id}/generate", content_type="multipart/form-data", data={
        "model": "black-forest-labs/flux-fill-dev", "prompt": "a boat", "frame_x": 0, "frame_y": 0,
        "frame_w": 256, "frame_h": 256, "infill": "telea", "mask_blur": 4,
        "mask": (io.BytesIO(png(mask)), "mask.png"), "lora_1": str(lora.id), "lora_1_scale": "0.6"})
    run_jobs()
    failed = db.session.scalars(db.select(Job).where(Job.status == "failed")).one()
    assert "Couldn't load LoRA weights from nobody/missing" in failed.error


def test_errors_block_and_warnings_need_consent(client, run_jobs, app, fake_replicate):
    captions = {"a.png": "tok, a cat", "b.png": "   ", "c.png": "a dog"}
    dataset = open_dataset(client, run_jobs, training_folder(app, "small", captions))
    page = client.get(f"/loras/train/{dataset.id}").get_data(as_text=True)
    assert "The caption file is empty" in page and f"/datasets/{dataset.id}/images/" in page
    response = start_training(client, dataset)
    assert response.status_code == 422 and "Fix the errors" in response.get_data(as_text=True)
    assert db.session.scalars(db.select(Lora)).all() == []
    assert [r for r in fake_replicate.requests if r.method == "POST"] == []
    (user_root(app) / "small" / "b.txt").write_text("tok, a bird")
    client.post(f"/datasets/{dataset.id}/rescan")
    run_jobs()
    response = start_training(client, dataset)
    text = response.get_data(as_text=True)
    assert response.status_code == 422 and "Train anyway" in text and "Only 3 images" in text
    assert "lacks the trigger word" in text
    assert start_training(client, dataset, accept_warnings="1").status_code == 204


def test_selected_images_only(client, run_jobs, dataset, fake_replicate):
    ids = [image.id for image in dataset_images(dataset)][:3]
    page = client.post(f"/loras/train/{dataset.id}", data={"scope": "selected", "ids": [str(i) for i in ids]})
    assert "the 3 selected images" in page.get_data(as_text=True)
    response = client.post(f"/loras/train/{dataset.id}/start", data={
        **train_form(scope="selected", accept_warnings="1"), "ids": [str(i) for i in ids]})
    assert response.status_code == 204, response.get_data(as_text=True)
    run_jobs()
    [training_id] = fake_replicate.trainings
    assert sorted(fake_replicate.training_zip(training_id)) == ["img00.png", "img01.png", "img02.png"]


def dataset_images(dataset):
    from app.datasets.models import DatasetImage
    return db.session.scalars(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id)
                              .order_by(DatasetImage.relpath)).all()


def test_a_failed_training_shows_why_and_lists_nothing_as_ready(client, run_jobs, dataset, fake_replicate):
    fake_replicate.next_training_outcome = "failed"
    start_training(client, dataset)
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.FAILED and "CUDA out of memory" in lora.error
    listing = client.get("/loras/").get_data(as_text=True)
    assert "Ready to use (0)" in listing and "CUDA out of memory" in listing
    # Retry asks for a new training, since that one ended on Replicate; the zip is not uploaded again.
    assert client.post(f"/loras/{lora.id}/retry").status_code == 200
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.READY and len(fake_replicate.trainings) == 2
    assert len(fake_replicate.requests_to("POST", "/v1/files")) == 1


def test_cancel_cancels_on_replicate(client, run_jobs, dataset, fake_replicate, app):
    app.config["LORA_POLL_SECONDS"] = 60  # the job defers itself between looks
    start_training(client, dataset)
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.TRAINING
    job = db.session.get(Job, lora.job_id)
    assert job.status == "running"  # no worker is holding it meanwhile
    response = client.post(f"/loras/{lora.id}/cancel")
    assert response.status_code == 200
    assert fake_replicate.requests_to("POST", f"/v1/trainings/{lora.training_id}/cancel")
    assert fake_replicate.trainings[lora.training_id]["status"] == "canceled"
    run_jobs()  # the waiting job was woken: it records the end now, not at its next look
    lora = only_lora()
    assert lora.status == Lora.CANCELED and db.session.get(Job, lora.job_id).status == "canceled"
    assert "Ready to use (0)" in client.get("/loras/").get_data(as_text=True)


def test_a_worker_restart_polls_the_same_training(client, run_jobs, dataset, fake_replicate, app):
    from app.jobs.runner import retry_job
    app.config["LORA_POLL_SECONDS"] = 60
    start_training(client, dataset)
    run_jobs()
    lora = only_lora()
    job = db.session.get(Job, lora.job_id)
    # The worker died: reconcile marks the job failed; Retry must poll the training, not create another.
    job.status, job.error = "failed", "The worker stopped"
    lora.status = Lora.FAILED
    db.session.commit()
    app.config["LORA_POLL_SECONDS"] = 0
    assert client.post(f"/loras/{lora.id}/retry").status_code == 200
    run_jobs()
    assert only_lora().status == Lora.READY
    assert len(fake_replicate.requests_to("POST", "/v1/models/ostris")) == 1


def test_a_create_whose_answer_was_lost_is_found_not_repeated(client, run_jobs, dataset, fake_replicate, app):
    fake_replicate.fail_next(500, path_prefix="/v1/models/ostris")  # the server failed after... or before
    start_training(client, dataset)
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.FAILED and "may have been created anyway" in lora.error
    assert fake_replicate.trainings == {}
    # Nothing was made, so on Retry Tessera says so instead of guessing.
    client.post(f"/loras/{lora.id}/retry")
    run_jobs()
    assert "cannot find it" in only_lora().error


def test_a_destination_the_token_may_not_write_is_a_sentence(client, run_jobs, dataset, fake_replicate):
    start_training(client, dataset, destination="someone-else/cat-lora")
    run_jobs()
    lora = only_lora()
    assert lora.status == Lora.FAILED
    assert "may not create models under 'someone-else'" in lora.error
    assert fake_replicate.trainings == {}
    page = client.get(f"/loras/{lora.id}").get_data(as_text=True)
    assert "may not create models under" in page and "Ready to use (0)" in client.get("/loras/").get_data(as_text=True)


def test_a_bad_destination_name_is_refused_in_the_form(client, dataset, fake_replicate):
    response = start_training(client, dataset, destination="Ünïcode name")
    assert response.status_code == 422 and "cannot be a Replicate model name" in response.get_data(as_text=True)
    response = start_training(client, dataset, destination="bad owner/name")
    assert response.status_code == 422 and "is not a Replicate account name" in response.get_data(as_text=True)
    assert fake_replicate.requests_to("POST", "/v1/files") == []


def test_import_by_reference(client, fake_replicate):
    fake_replicate.add_model("fofr/flux-pixar-cars", {"components": {"schemas": {}}})
    response = client.post("/loras/import", data={"reference": "fofr/flux-pixar-cars", "trigger": "PXR"})
    assert response.status_code == 303
    lora = only_lora()
    assert (lora.name, lora.source, lora.reference, lora.status) == ("flux-pixar-cars", "replicate",
                                                                    "fofr/flux-pixar-cars", Lora.READY)
    refused = client.post("/loras/import", data={"reference": "nobody/missing"})
    assert refused.status_code == 422 and "nobody/missing" in refused.get_data(as_text=True)
    bad = client.post("/loras/import", data={"reference": "https://example.com/x.ckpt"})
    assert bad.status_code == 422 and ".safetensors" in bad.get_data(as_text=True)
    hf = client.post("/loras/import", data={"reference": "https://huggingface.co/a/b-lora"})
    assert hf.status_code == 303


def test_sample_grid_at_four_scales(client, run_jobs, fake_replicate, user):
    add_lora_model(client)
    fake_replicate.add_model("fofr/ink", {"components": {"schemas": {}}})
    lora = Lora(user_id=user.id, name="ink", source="replicate", status=Lora.READY, trigger="INK",
                reference="fofr/ink")
    db.session.add(lora)
    db.session.commit()
    response = client.post(f"/loras/{lora.id}/samples", data={"prompt": "a ship", "seed": "42"})
    assert response.status_code == 200
    run_jobs()
    creates = fake_replicate.requests_to("POST", "/v1/models/black-forest-labs/flux-dev-lora/predictions")
    assert [c.json["input"]["lora_scale"] for c in creates] == [0.0, 0.5, 0.8, 1.0]
    assert {c.json["input"]["seed"] for c in creates} == {42}
    assert {c.json["input"]["prompt"] for c in creates} == {"INK, a ship"}
    job = db.session.scalars(db.select(Job).where(Job.kind == "loras.samples")).one()
    assert len(job.result["generations"]) == 4


BADGE = re.compile(r'<span id="lora-status-badge" class="lora-status (\w+)"( hx-swap-oob="true")?>(\w+)</span>')


def test_the_name_badge_follows_the_training_and_its_jobs_link_to_the_lora(client, run_jobs, dataset, app):
    start_training(client, dataset)
    lora = only_lora()
    page = client.get(f"/loras/{lora.id}").get_data(as_text=True)
    assert [m.group(1, 2, 3) for m in BADGE.finditer(page)] == [("preparing", None, "preparing")]
    assert "<p>Queued</p>" in page  # the progress line of a job no worker has taken yet
    # Each progress poll sends the badge again, out of band, with the state it is in now.
    lora.status = Lora.TRAINING
    db.session.commit()
    progress = client.get(f"/loras/{lora.id}/progress", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert [m.group(1, 2, 3) for m in BADGE.finditer(progress)] == [("training", ' hx-swap-oob="true"', "training")]
    assert 'id="lora-progress"' in progress and "Training <span" in progress
    lora.status = Lora.PREPARING
    db.session.commit()
    run_jobs()
    lora = only_lora()
    page = client.get(f"/loras/{lora.id}").get_data(as_text=True)
    assert [m.group(1, 3) for m in BADGE.finditer(page)] == [("ready", "ready")]
    # The jobs page links the training and the sample grid to their LoRA.
    assert client.post(f"/loras/{lora.id}/samples", data={"prompt": "tok, a cat", "seed": "3"}).status_code == 200
    jobs = client.get("/jobs/").get_data(as_text=True)
    assert jobs.count(f'<a href="/loras/{lora.id}">Its LoRA</a>') == 2


def test_the_train_page_marks_datasets_in_the_main_navigation(client, dataset):
    current = re.compile(r'<a href="([^"]+)" aria-current="page">')
    nav = lambda html: html.split('<nav aria-label="Main">')[1].split("</nav>")[0]  # noqa: E731
    train = client.get(f"/loras/train/{dataset.id}").get_data(as_text=True)
    assert current.findall(nav(train)) == ["/datasets/"]  # as its dataset sub-navigation says
    assert f'href="/loras/train/{dataset.id}" aria-current="page">Train a LoRA' in train
    assert current.findall(nav(client.get("/loras/").get_data(as_text=True))) == ["/loras/"]
    assert current.findall(nav(client.get(f"/datasets/{dataset.id}").get_data(as_text=True))) == ["/datasets/"]
