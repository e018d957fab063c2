"""The generate page: schema-driven form, validation before queueing, a job end to end."""
import io
import re

from PIL import Image

from app.extensions import db
from app.gallery import Generation
from app.models import Job
from app.replicate.catalog import model_label
from app.replicate.client import ModelInfo
from app.replicate.models import ModelEntry
from tests.app_helpers import log_in, make_user

FLUX_DEV = "black-forest-labs/flux-dev"


def creates(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


def test_form_is_rendered_from_the_model_schema(client):
    page = client.get(f"/?model={FLUX_DEV}").get_data(as_text=True)
    for name in ("prompt", "aspect_ratio", "num_outputs", "num_inference_steps", "guidance", "seed", "output_format"):
        assert f'name="{name}"' in page
        assert f'for="in-{name}"' in page  # every control has a visible label
    assert 'max="50"' in page  # num_inference_steps' range comes from the schema
    assert "<summary>Advanced" in page


def test_switching_model_swaps_the_form_and_keeps_what_was_typed(client):
    partial = client.get("/generate/form?model=black-forest-labs/flux-schnell&prompt=a+quiet+harbour&guidance=5"
                         ).get_data(as_text=True)
    assert 'id="generate-form"' in partial
    assert 'name="guidance"' not in partial  # schnell has no guidance input
    assert ">a quiet harbour</textarea>" in partial
    # the old model's untouched default does not override the new model's own default
    partial = client.get(f"/generate/form?model={FLUX_DEV}&previous_model=black-forest-labs/flux-schnell"
                         "&prompt=x&num_inference_steps=4&num_outputs=3").get_data(as_text=True)
    assert 'name="num_inference_steps" value="28"' in partial
    assert 'name="num_outputs" value="3"' in partial  # changed by the user: kept


def test_invalid_value_is_rejected_before_anything_is_queued(client, fake_replicate):
    response = client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox", "num_outputs": "9"})
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#generate-form"
    page = response.get_data(as_text=True)
    assert re.search(r'id="in-num_outputs-error"[^>]*>[^<]*4', page)
    assert 'value="a fox"' in page or ">a fox<" in page  # nothing the user typed is lost
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert creates(fake_replicate) == []


def test_without_a_token_the_page_says_how_to_set_one_and_queues_nothing(client, app, fake_replicate):
    app.config["REPLICATE_API_TOKEN"] = ""
    page = client.get("/").get_data(as_text=True)
    assert "REPLICATE_API_TOKEN" in page
    response = client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    assert response.status_code == 422
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert fake_replicate.requests == []


def test_generate_end_to_end(client, run_jobs, fake_replicate, app):
    response = client.post("/generate", data={"model": FLUX_DEV, "prompt": "a red fox", "num_outputs": "2",
                                              "guidance": "3.5", "seed": "1234"})
    assert response.status_code == 200
    partial = response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in partial  # polls while queued
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.QUEUED and job.params["input"]["seed"] == 1234

    run_jobs()

    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert "succeeded" in status
    assert "hx-trigger" not in status  # polling stops by itself once the job ended
    generations = db.session.scalars(db.select(Generation).order_by(Generation.output_index)).all()
    assert [g.output_index for g in generations] == [0, 1]
    # Each image as a thumbnail linking to its page in the gallery.
    assert all(f'href="/gallery/{g.id}"' in status and f"/generations/{g.id}/thumb.webp" in status for g in generations)
    [create] = creates(fake_replicate)
    assert create.path == f"/v1/models/{FLUX_DEV}/predictions"
    assert create.json["input"]["guidance"] == 3.5 and create.json["input"]["num_outputs"] == 2

    image_response = client.get(f"/generations/{generations[0].id}.png?download=1")
    assert image_response.status_code == 200
    assert "attachment" in image_response.headers["Content-Disposition"]
    with Image.open(io.BytesIO(image_response.data)) as image:
        assert image.format == "PNG"
        parameters = image.text["parameters"]
    assert parameters.startswith("a red fox\n")
    assert "Seed: 1234" in parameters and f"Model: {FLUX_DEV}" in parameters and "CFG scale: 3.5" in parameters

    gallery = client.get("/gallery").get_data(as_text=True)
    assert all(f'href="/gallery/{g.id}"' in gallery for g in generations)
    assert "seed 1234" not in gallery  # the grid is pictures; the settings are on each image's page
    detail = client.get(f"/gallery/{generations[0].id}").get_data(as_text=True)
    assert "<dt>Seed</dt><dd>1234</dd>" in detail and "<dt>guidance</dt><dd>3.5</dd>" in detail
    again = client.get(f"/?from={generations[0].id}").get_data(as_text=True)
    assert 'name="seed" value="1234"' in again and "a red fox" in again


def test_an_empty_seed_is_chosen_by_tessera_so_the_image_can_be_made_again(client, run_jobs):
    client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    run_jobs()
    generation = db.session.scalar(db.select(Generation))
    assert isinstance(generation.seed, int)
    assert generation.params["seed"] == generation.seed


def test_a_failed_prediction_shows_the_models_error_and_can_be_retried(client, run_jobs, fake_replicate):
    fake_replicate.next_outcome = "failed"
    client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED and "The model failed on Replicate" in job.error
    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert "Retry" in status and job.error in status

    fake_replicate.next_outcome = "succeeded"
    assert client.post(f"/jobs/{job.id}/retry").status_code == 200
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED
    assert len(creates(fake_replicate)) == 2  # the failed prediction could not be reused


def test_a_retried_job_polls_its_stored_prediction_instead_of_creating_another(client, run_jobs, fake_replicate, app):
    from app.replicate.catalog import client_from_config

    client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    job = db.session.scalar(db.select(Job))
    with client_from_config() as replicate:
        prediction = replicate.create_prediction(FLUX_DEV, {"prompt": "a fox"})
    job.prediction_id = prediction.id  # as if a worker had created it, then died
    db.session.commit()
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED
    assert len(creates(fake_replicate)) == 1


def test_canceling_a_queued_job_drops_it_before_any_request(client, run_jobs, fake_replicate):
    client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    job = db.session.scalar(db.select(Job))
    status = client.post(f"/jobs/{job.id}/cancel").get_data(as_text=True)
    assert "canceled" in status and "hx-trigger" not in status
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.CANCELED
    assert creates(fake_replicate) == []


def test_another_users_job_and_images_are_not_found(client, run_jobs, app):
    client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox"})
    run_jobs()
    job = db.session.scalar(db.select(Job))
    generation = db.session.scalar(db.select(Generation))
    intruder = log_in(app.test_client(), make_user("eve"))
    assert intruder.get(f"/jobs/{job.id}/status").status_code == 404
    assert intruder.post(f"/jobs/{job.id}/cancel").status_code == 404
    assert intruder.get(f"/generations/{generation.id}.png").status_code == 404
    assert "a fox" not in intruder.get("/gallery").get_data(as_text=True)


def test_pages_require_a_login(app):
    anonymous = app.test_client()
    for url in ("/", "/gallery", "/jobs/", "/generations/1.png"):
        response = anonymous.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_uploaded_non_image_is_refused_with_a_message(client, fake_replicate):
    response = client.post("/generate", data={"model": FLUX_DEV, "prompt": "a fox",
                                              "image": (io.BytesIO(b"not an image"), "x.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 422
    assert "not a readable image" in response.get_data(as_text=True)
    assert creates(fake_replicate) == []


def test_a_model_added_by_reference_gets_a_form_from_its_schema(client, fake_replicate):
    schema = {"components": {"schemas": {"Input": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0},
        "tile_count": {"type": "integer", "title": "Tile Count", "minimum": 1, "maximum": 9, "default": 3,
                       "x-order": 1}}}}}}
    fake_replicate.add_model("someone/tiler", schema)
    response = client.post("/models", data={"ref": "someone/tiler", "kind": "text-to-image"})
    assert response.status_code == 200
    form = response.get_data(as_text=True)
    assert '<option value="someone/tiler" selected' in form and 'name="tile_count"' in form and 'max="9"' in form
    # cached: rendering again asks Replicate nothing new
    before = len(fake_replicate.requests)
    client.get("/generate/form?model=someone/tiler")
    assert len(fake_replicate.requests) == before


def test_adding_an_unknown_or_malformed_model_says_why(client, fake_replicate):
    response = client.post("/models", data={"ref": "nobody/nothing", "kind": "text-to-image"})
    assert response.status_code == 422 and "has no model nobody/nothing" in response.get_data(as_text=True)
    response = client.post("/models", data={"ref": "not a model", "kind": "text-to-image"})
    assert response.status_code == 422
    assert "nobody/nothing" not in client.get("/").get_data(as_text=True).split('id="model"')[1].split("</select>")[0]


def test_an_uploaded_input_image_reaches_replicate_as_a_data_uri(client, run_jobs, fake_replicate):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "PNG")
    response = client.post("/generate", data={"model": FLUX_DEV, "prompt": "like this",
                                              "image": (io.BytesIO(buffer.getvalue()), "start.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 200
    run_jobs()
    [create] = creates(fake_replicate)
    assert create.json["input"]["image"].startswith("data:image/png;base64,")
    assert db.session.scalar(db.select(Job)).status == Job.SUCCEEDED


def test_the_navigation_marks_only_the_current_page(client):
    page = client.get("/gallery").get_data(as_text=True)
    assert page.count('aria-current="page"') == 1
    assert '<a href="/gallery" aria-current="page">Gallery</a>' in page


def test_a_model_added_by_reference_is_named_as_replicate_names_it(client, fake_replicate):
    schema = {"components": {"schemas": {"Input": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0}}}}}}
    version = fake_replicate.add_model("someone/tiler", schema, "ab12cd34" + "e" * 56, description="Tiles things")
    pinned = f"someone/tiler:{version}"
    assert client.post("/models", data={"ref": pinned, "kind": "text-to-image"}).status_code == 200
    assert client.post("/models", data={"ref": "someone/tiler", "kind": "text-to-image"}).status_code == 200
    picker = client.get("/").get_data(as_text=True).split('id="model"')[1].split("</select>")[0]
    # A pinned version by its short id, not the 64 characters pasted; the latest by owner/name alone.
    assert re.search(rf'value="{re.escape(pinned)}"[^>]*>someone/tiler · ab12cd34</option>', picker)
    assert re.search(r'value="someone/tiler"[^>]*>someone/tiler</option>', picker)
    entries = {e.ref: e.label for e in db.session.scalars(db.select(ModelEntry))}
    assert entries[pinned] == "someone/tiler · ab12cd34"


def test_the_label_is_replicates_spelling_of_the_model():
    info = ModelInfo(ref="Someone/Tiler", owner="someone", name="tiler", description="", version_id="v" * 64,
                     openapi_schema={})
    assert model_label(info) == "someone/tiler"
    pinned = ModelInfo(ref="someone/tiler:" + "v" * 64, owner="someone", name="tiler", description="",
                       version_id="v" * 64, openapi_schema={})
    assert model_label(pinned) == "someone/tiler · vvvvvvvv"
