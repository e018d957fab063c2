"""The table of real input shapes (tests/shapes_helpers.py) through the Generate form: each gets its
control, a bad value is refused by its field before anything is queued, and what reaches the fake
Replicate — which validates like Replicate — has the schema's JSON types. Secrets reach Replicate
and nothing else; a model's own 422 lands on the field."""
from __future__ import annotations

import html
import io
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from app.extensions import db
from app.gallery import Generation
from app.models import Job
from tests.shapes_helpers import SECRET, SHAPES, is_error

MODEL = "someone/shapes"


def shapes_schema() -> dict:
    properties = {"prompt": {"type": "string", "title": "Prompt", "x-order": 0}}
    extra: dict = {}
    for index, (_id, prop, schemas, _kind, _bounds, _cases) in enumerate(SHAPES):
        properties[f"s{index}"] = {**prop, "x-order": index + 1}
        extra.update(schemas)
    properties["hf_token"] = {**SECRET, "x-order": 999}
    return {"openapi": "3.0.2", "components": {"schemas": {
        "Input": {"type": "object", "title": "Input", "required": ["prompt"], "properties": properties},
        "Output": {"type": "array", "items": {"type": "string", "format": "uri"}}, **extra}}}


@pytest.fixture
def shapes(client, fake_replicate):
    fake_replicate.add_model(MODEL, shapes_schema())
    assert client.post("/models", data={"ref": MODEL, "kind": "text-to-image"}).status_code == 200
    return client


def creates(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


CONTROL = {"number": 'type="number"', "integer": 'type="number"', "choice": "<select", "boolean": None,
           "files": "data-file-input", "file": "data-file-input", "list": None, "password": 'type="password"',
           "json": "<textarea", "text": 'type="text"'}


def test_every_shape_renders_its_control(shapes):
    page = shapes.get(f"/?model={MODEL}").get_data(as_text=True)
    for index, (shape_id, _prop, _schemas, kind, (low, high), _cases) in enumerate(SHAPES):
        start = page.index(f'id="in-s{index}"')
        control = page[page.rindex("<", 0, start):page.index(">", start) + 1]
        if CONTROL[kind]:
            assert CONTROL[kind] in control, shape_id
        if kind in ("number", "integer"):
            assert (f'min="{low}"' in control) == (low is not None and "exclusive" not in shape_id), shape_id
            assert (f'max="{high}"' in control) == (high is not None), shape_id
    assert 'type="password"' in page and 'autocomplete="new-password"' in page


def test_a_list_of_numbers_hints_at_its_own_kind_of_number(shapes):
    page = shapes.get(f"/?model={MODEL}").get_data(as_text=True)
    hints = {}
    for index, (shape_id, _prop, _schemas, kind, _bounds, _cases) in enumerate(SHAPES):
        if kind == "list" and shape_id.startswith("array of"):
            start = page.index(f'id="in-s{index}"')
            hints[shape_id] = page[page.rindex("<", 0, start):page.index(">", start) + 1]
    assert 'placeholder="e.g. 1, 2, 3"' in hints["array of integers with maxItems"]
    assert 'placeholder="e.g. 0.8, 1.0"' in hints["array of numbers, each range-checked"]
    # A decimal keypad has no comma to separate the values with.
    assert not any("inputmode" in control for control in hints.values())


def test_every_shape_sends_its_json_type_to_the_model(shapes, run_jobs, fake_replicate):
    form, expected = {"model": MODEL, "prompt": "p"}, {}
    for index, (_id, _prop, _schemas, kind, _bounds, cases) in enumerate(SHAPES):
        text, value = next(((t, v) for t, v in cases if t and not is_error(v)), (None, None))
        if text is not None:
            form[f"s{index}"], expected[f"s{index}"] = text, value
    response = shapes.post("/generate", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.SUCCEEDED, job.error  # the fake refuses any wrong JSON type with a 422
    [create] = creates(fake_replicate)
    sent = create.json["input"]
    for name, value in expected.items():
        assert sent[name] == value and type(sent[name]) is type(value), name
    # empty optional inputs are left out, not sent as "" or "[]"
    untouched = {f"s{i}" for i, row in enumerate(SHAPES) if row[3] in ("files", "list", "json", "password")} - set(expected)
    assert not untouched & set(sent)


@pytest.mark.parametrize("index, text, error", [
    (index, text, value) for index, row in enumerate(SHAPES) for text, value in row[5] if is_error(value)])
def test_every_bad_value_is_refused_by_its_field_before_queueing(shapes, fake_replicate, index, text, error):
    response = shapes.post("/generate", data={"model": MODEL, "prompt": "p", f"s{index}": text})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="in-s{index}-error" role="alert">{html.escape(error)}<' in page
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0 and creates(fake_replicate) == []


def test_the_issue_cases_through_the_form(shapes, run_jobs, fake_replicate):
    guidance, steps = 0, 1  # rows of SHAPES
    response = shapes.post("/generate", data={"model": MODEL, "prompt": "p", f"s{guidance}": "3.5",
                                              f"s{steps}": "20"})
    assert response.status_code == 200
    run_jobs()
    sent = creates(fake_replicate)[0].json["input"]
    assert sent[f"s{guidance}"] == 3.5 and sent[f"s{steps}"] == 20
    response = shapes.post("/generate", data={"model": MODEL, "prompt": "p", f"s{steps}": "80"})
    assert "Must be at most 50" in response.get_data(as_text=True)


def test_a_secret_reaches_replicate_and_nothing_else(shapes, run_jobs, fake_replicate, app, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hf_SECRET_do_not_keep_0123456789"
    response = shapes.post("/generate", data={"model": MODEL, "prompt": "a fox", "hf_token": secret})
    assert response.status_code == 200
    assert secret not in response.get_data(as_text=True)
    job = db.session.scalar(db.select(Job))
    assert secret not in json.dumps(job.params)
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED, job.error
    assert creates(fake_replicate)[0].json["input"]["hf_token"] == secret  # sent to Replicate
    generation = db.session.scalar(db.select(Generation))
    assert secret not in json.dumps(generation.params) and secret not in json.dumps(job.result)
    png = shapes.get(f"/generations/{generation.id}.png").data
    with Image.open(io.BytesIO(png)) as image:
        assert secret not in image.text["parameters"]
    assert secret.encode() not in png
    for url in ("/gallery", f"/?from={generation.id}", f"/jobs/{job.id}/status"):
        assert secret not in shapes.get(url).get_data(as_text=True)
    assert secret not in caplog.text
    # nothing on disk under the data folder holds it either
    for path in Path(app.config["DATA_DIR"]).rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert secret.encode() not in path.read_bytes(), path


def test_a_secret_typed_in_is_not_echoed_after_a_mistake_elsewhere(shapes):
    response = shapes.post("/generate", data={"model": MODEL, "prompt": "p", "hf_token": "hf_abc", "s1": "80"})
    assert response.status_code == 422 and "hf_abc" not in response.get_data(as_text=True)


def test_switching_model_does_not_put_a_secret_in_the_url(shapes):
    form = shapes.get(f"/?model={MODEL}").get_data(as_text=True)
    select = form[form.index('id="model"'):form.index(">", form.index('id="model"'))]
    assert "hf_token" in select  # hx-params leaves it out of the GET that re-renders the form


def test_the_models_own_422_lands_on_its_field(shapes, run_jobs, fake_replicate):
    fake_replicate.fail_next(422, path_prefix=f"/v1/models/{MODEL}/predictions", body={
        "title": "Input validation failed", "status": 422,
        "detail": "- input.s0: Must be less than or equal to 5\n",
        "invalid_fields": [{"type": "number_lte", "field": "input.s0",
                            "description": "Must be less than or equal to 5"}]})
    shapes.post("/generate", data={"model": MODEL, "prompt": "p", "s0": "7"})
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED and "Must be less than or equal to 5" in job.error
    status = shapes.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert f"/?fix={job.id}" in status  # a link back to the form with the reason by the field
    page = shapes.get(f"/?fix={job.id}").get_data(as_text=True)
    assert 'id="in-s0-error" role="alert">Must be less than or equal to 5<' in page
    assert 'name="s0" value="7"' in page  # what the user sent is back in the form


def test_a_retry_after_the_secrets_expired_asks_for_them_again(shapes, run_jobs, fake_replicate, app):
    from app.replicate.inputs import SECRETS_KEY

    shapes.post("/generate", data={"model": MODEL, "prompt": "p", "hf_token": "hf_expiring"})
    job = db.session.scalar(db.select(Job))
    app.redis.delete(SECRETS_KEY.format(job.params["secrets"]))  # as if it expired or Redis restarted
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.FAILED and "hf_token" in job.error and "enter them again" in job.error
    assert creates(fake_replicate) == []  # nothing was sent without the secret


def test_switching_model_keeps_the_chosen_images(shapes, client, run_jobs):
    client.post("/generate", data={"model": "black-forest-labs/flux-schnell", "prompt": "a door"})
    run_jobs()
    generation = db.session.scalar(db.select(Generation))
    partial = client.get(f"/generate/form?model=black-forest-labs/flux-kontext-pro&previous_model=google/nano-banana"
                         f"&image_input=generation:{generation.id}&prompt=x").get_data(as_text=True)
    assert f'name="input_image" value="generation:{generation.id}"' in partial
