"""Model input schemas as form fields, form validation, and the shipped presets."""
from __future__ import annotations

import pytest

from app.replicate.client import parse_model_ref
from app.replicate.presets import PRESETS, preset_for
from app.replicate.forminput import validate_input
from app.replicate.schema import KINDS, field_by_name, input_fields, mask_polarity

SDXL = "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
SD_INPAINTING = ("stability-ai/stable-diffusion-inpainting:"
                 "e5a34f913de0adc560d20e002c45ad43a80031b62caacc3d84010c6b6a64870c")


def schema(properties: dict, *, required: list[str] | None = None, **enums: dict) -> dict:
    return {"components": {"schemas": {"Input": {"type": "object", "properties": properties,
                                                 "required": required or []}, **enums}}}


def fields_of(ref: str):
    return input_fields(preset_for(ref).openapi_schema)


# input_fields

def test_every_preset_schema_gives_ordered_fields_of_the_right_kinds():
    for preset in PRESETS:
        fields = input_fields(preset.openapi_schema)
        properties = preset.openapi_schema["components"]["schemas"]["Input"]["properties"]
        assert [f.name for f in fields] == sorted(properties, key=lambda name: properties[name]["x-order"])
        for field in fields:
            assert field.title and field.kind in KINDS and field.kind != "unsupported"
            if field.kind == "choice":
                assert field.choices and (field.default is None or field.default in field.choices)
            if field.default is not None and field.kind in ("integer", "number"):
                assert (field.minimum is None or field.default >= field.minimum) and \
                       (field.maximum is None or field.default <= field.maximum)
        if preset.image_field:
            assert field_by_name(fields, preset.image_field).kind == "file"
        if preset.mask_field:
            assert field_by_name(fields, preset.mask_field).kind == "file"


def test_flux_dev_fields_in_detail():
    fields = fields_of("black-forest-labs/flux-dev")
    assert [f.name for f in fields][:4] == ["prompt", "aspect_ratio", "image", "prompt_strength"]
    prompt = field_by_name(fields, "prompt")
    assert prompt.kind == "textarea" and prompt.required and not prompt.advanced
    aspect = field_by_name(fields, "aspect_ratio")
    assert aspect.kind == "choice" and aspect.default == "1:1" and "16:9" in aspect.choices
    assert aspect.description == "Aspect ratio for the generated image"  # not the enum's "An enumeration."
    steps = field_by_name(fields, "num_inference_steps")
    assert (steps.kind, steps.minimum, steps.maximum, steps.default, steps.advanced) == ("integer", 1, 50, 28, False)
    assert field_by_name(fields, "guidance").kind == "number"
    go_fast = field_by_name(fields, "go_fast")
    assert go_fast.kind == "boolean" and go_fast.default is True and go_fast.advanced
    assert field_by_name(fields, "output_quality").advanced and not field_by_name(fields, "seed").advanced


def test_enum_through_allof_ref_with_integer_choices():
    width = field_by_name(fields_of(SD_INPAINTING), "width")
    assert width.kind == "choice" and width.default == 512
    assert width.choices[0] == 64 and width.choices[-1] == 1024


def test_fields_without_order_or_title_come_last_with_a_readable_title():
    fields = input_fields(schema({
        "extra_detail": {"type": "string"},
        "style": {"allOf": [{"$ref": "#/components/schemas/style"}], "x-order": 1, "default": "photo"},
        "negative_prompt": {"type": "string", "x-order": 0, "title": "Negative Prompt"},
        "instructions": {"type": "string", "description": "The prompt to follow", "x-order": 2},
        "init": {"type": "string", "format": "uri", "x-order": 3},
    }, required=["init"], style={"type": "string", "enum": ["photo", "anime"], "title": "style"}))
    assert [f.name for f in fields] == ["negative_prompt", "style", "instructions", "init", "extra_detail"]
    extra = fields[-1]
    assert extra.title == "Extra detail" and extra.kind == "text" and extra.advanced and not extra.required
    assert fields[0].kind == "textarea" and fields[0].title == "Negative Prompt"
    assert fields[1].kind == "choice" and fields[1].choices == ["photo", "anime"] and fields[1].title == "Style"
    assert fields[2].kind == "textarea"  # its description calls it a prompt
    assert fields[3].kind == "file" and fields[3].required


def test_empty_or_missing_schema_gives_no_fields():
    assert input_fields({}) == [] and input_fields({"components": {}}) == []


def test_mask_polarity_is_read_from_the_mask_description():
    assert mask_polarity(preset_for(SD_INPAINTING).openapi_schema) == "white-repaints"
    assert mask_polarity(preset_for("black-forest-labs/flux-fill-dev").openapi_schema) == "white-repaints"
    older = schema({"mask": {"type": "string", "format": "uri",
                             "description": "Black pixels are inpainted and white pixels are preserved."}})
    assert mask_polarity(older) == "black-repaints"
    assert mask_polarity(preset_for("black-forest-labs/flux-schnell").openapi_schema) is None


# validate_input

def test_values_are_coerced_to_the_schema_types():
    fields = fields_of("black-forest-labs/flux-dev")
    values, errors = validate_input(fields, {
        "prompt": "  a red fox ", "aspect_ratio": "16:9", "num_outputs": "2", "guidance": "3.5", "seed": "1234",
        "go_fast": "on", "prompt_strength": "", "output_quality": "",
    })
    assert errors == {}
    assert values == {"prompt": "a red fox", "aspect_ratio": "16:9", "num_outputs": 2, "guidance": 3.5,
                      "seed": 1234, "go_fast": True, "disable_safety_checker": False}


def test_integer_choices_come_back_as_integers_and_files_pass_through():
    values, errors = validate_input(fields_of(SD_INPAINTING), {"prompt": "p", "width": "768"},
                                    files={"image": "data:image/png;base64,AAAA", "mask": "https://x.test/m.png"})
    assert errors == {}
    assert values["width"] == 768 and values["image"] == "data:image/png;base64,AAAA"
    assert values["mask"] == "https://x.test/m.png"


def test_validation_errors_say_what_is_wrong():
    fields = fields_of("black-forest-labs/flux-dev")
    _values, errors = validate_input(fields, {
        "num_outputs": "9", "num_inference_steps": "0", "seed": "1.5", "guidance": "lots",
        "aspect_ratio": "2:1", "image": "C:/pictures/fox.png",
    })
    assert errors == {
        "prompt": "This field is required",
        "num_outputs": "Must be at most 4",
        "num_inference_steps": "Must be at least 1",
        "seed": "Must be a whole number",
        "guidance": "Must be a number",
        "aspect_ratio": "Choose one of: " + ", ".join(field_by_name(fields, "aspect_ratio").choices),
        "image": "Must be a link to a file (https://...), an uploaded file or a gallery image",
    }


def test_whole_numbers_written_with_a_decimal_point_are_accepted():
    values, errors = validate_input(fields_of("black-forest-labs/flux-schnell"), {"prompt": "p", "num_outputs": "2.0"})
    assert errors == {} and values["num_outputs"] == 2


def test_checkboxes_are_false_unless_sent_ticked():
    fields = fields_of("black-forest-labs/flux-schnell")
    values, _ = validate_input(fields, {"prompt": "p"})
    assert values["go_fast"] is False and values["disable_safety_checker"] is False
    values, _ = validate_input(fields, {"prompt": "p", "go_fast": "true", "disable_safety_checker": "false"})
    assert values["go_fast"] is True and values["disable_safety_checker"] is False


def test_fractional_limits_are_written_as_given():
    fields = fields_of("black-forest-labs/flux-fill-pro")
    _values, errors = validate_input(fields, {"guidance": "1", "steps": "51"}, files={"image": "data:,"})
    assert errors == {"guidance": "Must be at least 1.5", "steps": "Must be at most 50"}


# presets

def test_presets_are_the_shipped_models():
    assert [p.ref for p in PRESETS] == [
        "black-forest-labs/flux-schnell", "black-forest-labs/flux-dev", "black-forest-labs/flux-dev-lora",
        "google/nano-banana", "black-forest-labs/flux-kontext-pro", SDXL, SD_INPAINTING,
        "black-forest-labs/flux-fill-dev", "black-forest-labs/flux-fill-pro",
        "salesforce/blip:2e1dddc8621f72155f24cf2e0adbde548458d3cab9f00c0139eea840d0ac4746",
    ]
    for preset in PRESETS:
        parse_model_ref(preset.ref)
        assert preset.kind in ("text-to-image", "inpaint", "caption")
        assert (preset.mask_field is None) == (preset.mask_polarity is None)
        if preset.mask_field:
            assert mask_polarity(preset.openapi_schema) == preset.mask_polarity
        assert preset.max_pixels >= 512 * 512 and preset.size_multiple >= 1
    assert [p.ref for p in PRESETS if p.kind == "inpaint"] == [
        SD_INPAINTING, "black-forest-labs/flux-fill-dev", "black-forest-labs/flux-fill-pro"]
    assert all(p.can_inpaint for p in PRESETS if p.kind == "inpaint") and preset_for(SDXL).can_inpaint


@pytest.mark.parametrize("ref, expected", [
    ("black-forest-labs/flux-fill-dev", "black-forest-labs/flux-fill-dev"),
    (f" {SDXL} ", SDXL),
    ("stability-ai/sdxl", None),  # another version may take other inputs
    ("stability-ai/sdxl:" + "0" * 64, None),
    ("someone/else", None),
    ("", None),
])
def test_preset_for_matches_exact_refs_only(ref, expected):
    preset = preset_for(ref)
    assert (preset.ref if preset else None) == expected


def test_the_new_presets_take_a_lora_several_images_or_one_image_to_edit():
    lora = fields_of("black-forest-labs/flux-dev-lora")
    assert field_by_name(lora, "lora_weights").kind == "text" and not field_by_name(lora, "lora_weights").advanced
    scale = field_by_name(lora, "lora_scale")
    assert (scale.kind, scale.minimum, scale.maximum, scale.default) == ("number", -1, 3, 1)
    banana = fields_of("google/nano-banana")
    images = field_by_name(banana, "image_input")
    assert images.kind == "files" and images.default is None and not images.advanced
    assert field_by_name(banana, "aspect_ratio").default == "match_input_image"
    kontext = fields_of("black-forest-labs/flux-kontext-pro")
    assert field_by_name(kontext, "input_image").kind == "file"
    assert field_by_name(kontext, "safety_tolerance").maximum == 6
    for ref in ("google/nano-banana", "black-forest-labs/flux-kontext-pro"):
        output = preset_for(ref).openapi_schema["components"]["schemas"]["Output"]
        assert output == {"title": "Output", "type": "string", "format": "uri"}  # one URL, not a list


def test_flux_dev_lora_takes_flux_dev_inputs_and_its_lora_after_them():
    """One list of FLUX.1 [dev] inputs serves both presets: flux-dev-lora is flux-dev plus the LoRA."""
    def inputs(ref):
        return preset_for(ref).openapi_schema["components"]["schemas"]["Input"]["properties"]

    dev, lora = inputs("black-forest-labs/flux-dev"), inputs("black-forest-labs/flux-dev-lora")
    assert list(lora) == [*dev, "lora_weights", "lora_scale"]
    assert all(lora[name] == dev[name] for name in dev)
    assert [lora[name]["x-order"] for name in ("lora_weights", "lora_scale")] == [len(dev), len(dev) + 1]
    assert dev["num_inference_steps"]["default"] == 28 and dev["guidance"]["maximum"] == 10
