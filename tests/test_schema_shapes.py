"""Every input shape real Replicate models publish, walked into form fields and checked values.

SHAPES (tests/shapes_helpers.py) is the table: each row is one input schema as a model publishes it
(cog 0.8-0.16, pydantic 1 and 2, OpenAPI 3.0 and 3.1; the reference's shapes and those of public
model pages), the control it must become, and form text -> the JSON value sent (or the error by the
field). The same table runs through the Generate form in test_generate_shapes.py.
"""
from __future__ import annotations

import json

import pytest

from app.replicate.forminput import validate_input
from app.replicate.schema import MAX_RENDERED_CHOICES, field_by_name, input_fields, secret_names, without_secrets
from tests.shapes_helpers import GUIDANCE, IMAGE_INPUT, LORA_SCALES, SECRET, SHAPES, STEPS, is_error


def openapi(properties: dict, *, required: list[str] = (), **schemas: dict) -> dict:
    return {"openapi": "3.0.2", "components": {"schemas": {
        "Input": {"type": "object", "title": "Input", "properties": properties, "required": list(required)},
        **schemas}}}


def one(prop: dict, *, required: bool = False, **schemas: dict):
    [field] = input_fields(openapi({"x": prop}, required=["x"] if required else [], **schemas))
    return field


@pytest.mark.parametrize("prop, schemas, kind, bounds, cases", [pytest.param(*row[1:], id=row[0]) for row in SHAPES])
def test_each_shape_gets_its_control_range_and_json_type(prop, schemas, kind, bounds, cases):
    field = one(prop, **schemas)
    assert field.kind == kind and field.problem is None
    assert (field.minimum, field.maximum) == bounds
    for text, expected in cases:
        values, errors = validate_input([field], {"x": text} if text or kind != "boolean" else {})
        if is_error(expected):
            assert errors == {"x": expected}, text
            assert values == {}
        else:
            assert errors == {}, text
            if expected is None:
                assert "x" not in values, text  # empty: left out so the model's default applies
            else:
                assert values["x"] == expected and type(values["x"]) is type(expected), text
                json.dumps(values)  # what is sent is plain JSON


def test_the_issue_cases_send_numbers_and_leave_empty_inputs_out():
    fields = input_fields(openapi({"prompt": {"type": "string"}, "guidance": GUIDANCE, "num_inference_steps": STEPS,
                                   "image_input": IMAGE_INPUT, "lora_scales": LORA_SCALES}, required=["prompt"]))
    values, errors = validate_input(fields, {"prompt": "p", "guidance": "3.5", "num_inference_steps": "20",
                                             "image_input": "", "lora_scales": "0.8, 1.0"})
    assert errors == {}
    assert json.dumps(values) == '{"prompt": "p", "guidance": 3.5, "num_inference_steps": 20, "lora_scales": [0.8, 1.0]}'
    values, errors = validate_input(fields, {"prompt": "p", "guidance": "", "num_inference_steps": "80"})
    assert errors == {"num_inference_steps": "Must be at most 50"} and "guidance" not in values


def test_several_files_come_as_a_list_in_order_and_counts_are_checked():
    field = one({**IMAGE_INPUT, "maxItems": 2})
    assert field.default is None  # default [] means "nothing": the control starts empty
    values, errors = validate_input([field], {}, files={"x": ["data:image/png;base64,AA", "https://h.test/b.png"]})
    assert errors == {} and values == {"x": ["data:image/png;base64,AA", "https://h.test/b.png"]}
    assert validate_input([field], {}, files={"x": []}) == ({}, {})
    _values, errors = validate_input([field], {}, files={"x": ["https://h.test/1", "https://h.test/2",
                                                              "https://h.test/3"]})
    assert errors == {"x": "Give at most 2 files"}
    # Without JavaScript the links typed into the form are the list.
    values, errors = validate_input([field], {"x": "https://h.test/a.png https://h.test/b.png"})
    assert values == {"x": ["https://h.test/a.png", "https://h.test/b.png"]} and errors == {}
    _values, errors = validate_input([one(IMAGE_INPUT, required=True)], {})
    assert errors == {"x": "Add at least one file"}


def test_secrets_are_marked_and_can_be_left_out_of_what_is_kept():
    fields = input_fields(openapi({"prompt": {"type": "string"}, "hf_token": SECRET,
                                   "api_key": {"type": "string", "writeOnly": True}}))
    assert secret_names(fields) == {"hf_token", "api_key"}
    assert field_by_name(fields, "api_key").kind == "password"
    values, _ = validate_input(fields, {"prompt": "p", "hf_token": "hf_x", "api_key": "k"})
    assert without_secrets(fields, values) == {"prompt": "p"}


def test_required_fields_are_marked_and_an_empty_one_is_refused():
    fields = input_fields(openapi({"prompt": {"type": "string"}, "seed": {"type": "integer"}}, required=["prompt"]))
    assert [f.required for f in fields] == [True, False]
    assert validate_input(fields, {"prompt": "  "}) == ({}, {"prompt": "This field is required"})


# Schemas that cannot be read: a clear message for that one input, the rest of the form intact.

def test_a_ref_cycle_makes_one_unsupported_field_with_a_clear_message():
    fields = input_fields(openapi(
        {"prompt": {"type": "string"}, "tree": {"$ref": "#/components/schemas/Node"}},
        Node={"type": "object", "properties": {"child": {"$ref": "#/components/schemas/Node"}},
              "allOf": [{"$ref": "#/components/schemas/Node"}]}))
    tree = field_by_name(fields, "tree")
    assert tree.kind == "unsupported"
    assert "$ref cycle" in tree.problem and "#/components/schemas/Node" in tree.problem
    assert field_by_name(fields, "prompt").kind == "textarea"
    assert validate_input(fields, {"prompt": "p", "tree": "x"}) == ({"prompt": "p"}, {})


def test_a_required_unreadable_input_is_refused_with_its_reason():
    fields = input_fields(openapi({"t": {"type": "tensor"}}, required=["t"]))
    assert fields[0].kind == "unsupported" and "'tensor' is not a JSON Schema type" in fields[0].problem
    _values, errors = validate_input(fields, {"t": "1"})
    assert "cannot be run from Tessera" in errors["t"] and "tensor" in errors["t"]


@pytest.mark.parametrize("prop, reason", [
    ({"$ref": "#/components/schemas/Missing"}, "which the model's schema does not define"),
    ({"$ref": "https://evil.test/schema.json"}, "outside the model's schema"),
    ({"type": 7}, "not written as a JSON Schema type name"),
    ({"type": "null"}, "only accepts null"),
    ("string", "not a JSON Schema object"),
    (None, "not a JSON Schema object"),
])
def test_unreadable_shapes_say_why(prop, reason):
    field = one(prop)
    assert field.kind == "unsupported" and reason in field.problem


def test_hostile_keywords_are_ignored_not_fatal():
    fields = input_fields(openapi({
        "a": {"type": "integer", "minimum": "abc", "maximum": {"x": 1}, "x-order": "first", "title": ["t"]},
        "b": {"type": "number", "minimum": True, "maximum": 1e400, "default": "not a number"},
        "c": {"type": "string", "title": "<script>alert(1)</script>", "description": 5},
        "d": {"allOf": "nope", "anyOf": [], "type": "string"},
        "e": {"type": "array", "items": "???"},
    }, required="prompt"))
    a, b, c, d, e = (field_by_name(fields, n) for n in "abcde")
    assert (a.kind, a.minimum, a.maximum, a.title) == ("integer", None, None, "A")
    assert (b.minimum, b.maximum) == (None, None)
    assert c.title == "<script>alert(1)</script>" and c.description == ""  # escaped where it is shown
    assert d.kind == "text" and e.kind == "unsupported"
    assert validate_input([a], {"a": "5"}) == ({"a": 5}, {})


def test_a_huge_enum_is_checked_in_full_but_not_rendered_as_a_select():
    field = one({"type": "string", "enum": [f"v{i}" for i in range(100_000)]})
    assert field.kind == "choice" and field.many_choices and len(field.shown_choices) == MAX_RENDERED_CHOICES
    assert validate_input([field], {"x": "v99999"}) == ({"x": "v99999"}, {})
    _values, errors = validate_input([field], {"x": "nope"})
    assert errors["x"].endswith("(100000 values)") and len(errors["x"]) < 300


def test_broken_documents_give_no_fields():
    for document in (None, [], {"components": []}, {"components": {"schemas": {"Input": []}}},
                     {"components": {"schemas": {"Input": {"properties": ["a"]}}}}):
        assert input_fields(document) == []


def test_deep_nesting_is_bounded():
    node: dict = {"type": "integer"}
    for _ in range(5000):
        node = {"allOf": [node]}
    field = one(node)
    assert field.kind == "unsupported" and "nested too deeply" in field.problem
