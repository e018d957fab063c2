"""The canvas form offers a model's options but never its secret inputs (a canvas request's input is
kept in rows) nor image inputs other than the frame it sends itself."""
from __future__ import annotations

from tests.canvas_helpers import make_canvas


def test_the_canvas_form_leaves_out_secrets_and_other_image_inputs(client, user, fake_replicate):
    schema = {"components": {"schemas": {"Input": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "x-order": 0},
        "image": {"type": "string", "format": "uri", "x-order": 1},
        "mask": {"type": "string", "format": "uri", "x-order": 2},
        "control_images": {"type": "array", "items": {"type": "string", "format": "uri"}, "x-order": 3},
        "hf_token": {"type": "string", "format": "password", "x-cog-secret": True, "x-order": 4},
        "strength": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "null"}], "x-order": 5}}}},
        "Output": {"type": "array", "items": {"type": "string", "format": "uri"}}}}
    fake_replicate.add_model("someone/inpainter", schema)
    assert client.post("/models", data={"ref": "someone/inpainter", "kind": "inpaint"}).status_code == 200
    canvas = make_canvas(user)
    form = client.get(f"/canvas/{canvas.id}/form?model=someone/inpainter").get_data(as_text=True)
    assert 'name="strength"' in form and 'type="number"' in form
    for name in ("hf_token", "control_images", "image", "mask"):
        assert f'name="{name}"' not in form, name
