"""Hostile or malformed model schemas never make a page answer 500 (issue 9): each page that shows or
uses a model's inputs answers, with the bad input explained and markup shown as text."""
from __future__ import annotations

import pytest

from app.extensions import db
from app.models import Job

MARKUP = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def schema(properties, **extra) -> dict:
    return {"openapi": "3.0.2", "components": {"schemas": {
        "Input": {"type": "object", "properties": properties, "required": ["prompt"]}, **extra}}}


HOSTILE = {
    "non-numeric bounds": schema({"prompt": {"type": "string"},
                                  "steps": {"type": "integer", "minimum": "abc", "maximum": [1], "default": "many"},
                                  "scale": {"type": "number", "minimum": {"$gt": 1}, "exclusiveMaximum": "x"}}),
    "markup in titles": schema({"prompt": {"type": "string", "title": MARKUP, "description": MARKUP},
                                MARKUP: {"type": "string", "enum": [MARKUP, "b"], "default": MARKUP},
                                "mode": {"allOf": [{"$ref": "#/components/schemas/mode"}]}},
                               mode={"type": "string", "enum": [MARKUP], "title": MARKUP}),
    "huge enum": schema({"prompt": {"type": "string"},
                         "style": {"type": "string", "enum": [f"style number {i}" for i in range(100_000)]}}),
    "$ref cycle": schema({"prompt": {"type": "string"}, "loop": {"$ref": "#/components/schemas/A"}},
                         A={"allOf": [{"$ref": "#/components/schemas/B"}]},
                         B={"anyOf": [{"$ref": "#/components/schemas/A"}]}),
    "unknown type": schema({"prompt": {"type": "string"}, "t": {"type": "tensor"}, "u": {"type": ["integer", 3]}}),
    "junk everywhere": {"openapi": "3.0.2", "components": {"schemas": {"Input": {
        "type": "object", "required": "prompt", "properties": {
            "prompt": {"type": "string", "x-order": "first", "title": ["no"]},
            "a": None, "b": "string", "c": [], "d": {"enum": "abc"}, "e": {"type": "array", "items": 5},
            "f": {"enum": [{"k": 1}, [1, 2], None]}, "g": {"type": "number", "default": 1e308 * 10},
            "h": {"type": "integer", "minimum": 5, "maximum": 1}}}}}},
    "not a schema at all": {"components": {"schemas": {"Input": ["prompt"]}}},
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_schemas_never_make_a_page_answer_500(client, fake_replicate, run_jobs, name):
    ref = f"hostile/{name.replace(' ', '-').replace('$', 'x')}"
    fake_replicate.add_model(ref, HOSTILE[name])
    response = client.post("/models", data={"ref": ref, "kind": "text-to-image"})
    assert response.status_code == 200
    for url in (f"/?model={ref}", f"/generate/form?model={ref}&previous_model=black-forest-labs/flux-dev&prompt=x",
                f"/generate/form?model=black-forest-labs/flux-dev&previous_model={ref}&prompt=x"):
        page = client.get(url)
        assert page.status_code == 200, url
        text = page.get_data(as_text=True)
        assert "<script>alert(2)</script>" not in text and 'onerror="alert(1)"' not in text
        assert len(text) < 1_000_000  # a 100,000-value enum does not make a huge page
    submitted = client.post("/generate", data={"model": ref, "prompt": "a fox", "style": "style number 99999",
                                               "steps": "3", "t": "1", "loop": "x"})
    assert submitted.status_code in (200, 422)
    if submitted.status_code == 200:
        run_jobs()
        assert db.session.scalar(db.select(Job)).status in (Job.SUCCEEDED, Job.FAILED)


def test_a_cycle_and_an_unknown_type_are_explained_on_the_page(client, fake_replicate):
    fake_replicate.add_model("hostile/cycle", HOSTILE["$ref cycle"])
    fake_replicate.add_model("hostile/tensor", HOSTILE["unknown type"])
    client.post("/models", data={"ref": "hostile/cycle", "kind": "text-to-image"})
    client.post("/models", data={"ref": "hostile/tensor", "kind": "text-to-image"})
    page = client.get("/?model=hostile/cycle").get_data(as_text=True)
    assert "$ref cycle: #/components/schemas/A → #/components/schemas/B → #/components/schemas/A" in page
    page = client.get("/?model=hostile/tensor").get_data(as_text=True)
    assert "its type &#39;tensor&#39; is not a JSON Schema type" in page


def test_a_huge_enum_is_a_text_box_checked_against_every_value(client, fake_replicate, run_jobs):
    fake_replicate.add_model("hostile/enum", HOSTILE["huge enum"])
    client.post("/models", data={"ref": "hostile/enum", "kind": "text-to-image"})
    page = client.get("/?model=hostile/enum").get_data(as_text=True)
    assert '<select id="in-style"' not in page and 'id="in-style"' in page and "One of 100000 values" in page
    refused = client.post("/generate", data={"model": "hostile/enum", "prompt": "p", "style": "nope"})
    assert refused.status_code == 422 and "(100000 values)" in refused.get_data(as_text=True)
    accepted = client.post("/generate", data={"model": "hostile/enum", "prompt": "p", "style": "style number 99999"})
    assert accepted.status_code == 200


def test_hostile_schemas_on_the_canvas_page_do_not_500(client, fake_replicate, user):
    from tests.canvas_helpers import make_canvas

    canvas = make_canvas(user)
    for index, (name, document) in enumerate(HOSTILE.items()):
        ref = f"hostile/inpaint-{index}"
        fake_replicate.add_model(ref, document)
        assert client.post("/models", data={"ref": ref, "kind": "inpaint"}).status_code == 200, name
        response = client.get(f"/canvas/{canvas.id}/form?model={ref}")
        assert response.status_code == 200, name
        assert "<script>alert(2)</script>" not in response.get_data(as_text=True)


def test_a_model_whose_api_answer_is_malformed_is_added_without_options(client, fake_replicate):
    fake_replicate.add_model("hostile/shapeless", ["not", "an", "object"])
    response = client.post("/models", data={"ref": "hostile/shapeless", "kind": "text-to-image"})
    assert response.status_code == 200
    assert client.get("/?model=hostile/shapeless").status_code == 200
