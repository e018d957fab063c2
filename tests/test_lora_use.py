"""Using a LoRA: references users paste, filling a model's LoRA inputs, the <lora:name:scale> record."""
from __future__ import annotations

import pytest

from app.loras.use import (
    Pick, ReferenceError, apply_picks, lora_slots, parse_reference, with_trigger,
)
from app.gallery.outputs import lora_tags

VERSION = "a" * 64


@pytest.mark.parametrize("text, source, value, name", [
    ("fofr/flux-pixar-cars", "replicate", "fofr/flux-pixar-cars", "flux-pixar-cars"),
    (f"me/my-lora/{VERSION}", "replicate", f"me/my-lora/{VERSION}", "my-lora"),
    (f"me/my-lora:{VERSION}", "replicate", f"me/my-lora/{VERSION}", "my-lora"),
    ("https://huggingface.co/alvdansen/frosting_lane_flux", "huggingface",
     "https://huggingface.co/alvdansen/frosting_lane_flux", "frosting_lane_flux"),
    ("https://civitai.com/models/12345/ink-style?modelVersionId=1", "civitai",
     "https://civitai.com/models/12345/ink-style?modelVersionId=1", "ink-style"),
    ("https://civitai.com/api/download/models/678", "civitai", "https://civitai.com/api/download/models/678",
     "civitai-678"),
    ("https://example.com/files/My LoRA.safetensors", "url", "https://example.com/files/My LoRA.safetensors",
     "My-LoRA"),
])
def test_references_users_paste(text, source, value, name):
    reference = parse_reference(f"  {text} ")
    assert (reference.source, reference.value, reference.name) == (source, value, name)


@pytest.mark.parametrize("text, says", [
    ("", "Write a Replicate model"), ("just-a-name", "Write a Replicate model"),
    ("https://example.com/model.ckpt", "end in .safetensors"),
    ("https://huggingface.co/onlyowner", "huggingface.co/<owner>/<model>"),
    ("https://civitai.com/user/someone", "civitai.com/models/<id>"),
    ("ftp://example.com/x.safetensors", "Write a Replicate model"),
])
def test_references_that_cannot_load_say_what_works(text, says):
    with pytest.raises(ReferenceError, match=None) as caught:
        parse_reference(text)
    assert says in str(caught.value)


def test_lora_slots():
    assert lora_slots(["prompt", "lora_weights", "lora_scale", "extra_lora", "extra_lora_scale"]) == [
        ("lora_weights", "lora_scale"), ("extra_lora", "extra_lora_scale")]
    assert lora_slots(["prompt", "lora_weights"]) == [("lora_weights", None)]
    assert lora_slots(["prompt", "lora_scale"]) == []  # sdxl's lora_scale alone takes no reference


def test_with_trigger():
    assert with_trigger("a cat", "TOK") == "TOK, a cat"
    assert with_trigger("a tok cat", "TOK") == "a tok cat"
    assert with_trigger("a TOKEN cat", "TOK") == "TOK, a TOKEN cat"
    assert with_trigger("", "TOK") == "TOK"
    assert with_trigger("a cat", "") == "a cat"


def test_apply_picks_fills_slots_scales_and_prompt():
    values = {"prompt": "a cat on a mat"}
    picks = [Pick(1, "ink", "me/ink/" + VERSION, "INKSTYLE", 0.8), Pick(2, "cat", "https://x/cat.safetensors", "", 1.2)]
    record = apply_picks(values, picks, ["prompt", "lora_weights", "lora_scale", "extra_lora", "extra_lora_scale"])
    assert values == {"prompt": "INKSTYLE, a cat on a mat", "lora_weights": "me/ink/" + VERSION, "lora_scale": 0.8,
                      "extra_lora": "https://x/cat.safetensors", "extra_lora_scale": 1.2}
    assert record == [{"id": 1, "name": "ink", "reference": "me/ink/" + VERSION, "scale": 0.8, "slot": 0},
                      {"id": 2, "name": "cat", "reference": "https://x/cat.safetensors", "scale": 1.2, "slot": 1}]
    assert lora_tags(record) == " <lora:ink:0.8> <lora:cat:1.2>"
    with pytest.raises(ValueError, match="takes 1 LoRA"):
        apply_picks({}, picks, ["prompt", "lora_weights", "lora_scale"])
    with pytest.raises(ValueError, match="between -1 and 3"):
        apply_picks({}, [Pick(1, "x", "a/b", "", 3.5)], ["lora_weights", "lora_scale"])
