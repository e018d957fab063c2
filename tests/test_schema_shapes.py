"""Every input shape real Replicate models publish, walked into form fields and checked values.

SHAPES is the table: each row is one input schema as a model publishes it (cog 0.8-0.16, pydantic 1
and 2, OpenAPI 3.0 and 3.1; the reference's shapes and those of public model pages), the control it
must become, and form text -> the JSON value sent (or the error by the field). The same table runs
through the Generate form in test_generate_shapes.py.
"""
from __future__ import annotations

import json

import pytest

from app.replicate.forminput import validate_input
from app.replicate.schema import MAX_RENDERED_CHOICES, field_by_name, input_fields, secret_names, without_secrets


def openapi(properties: dict, *, required: list[str] = (), **schemas: dict) -> dict:
    return {"openapi": "3.0.2", "components": {"schemas": {
        "Input": {"type": "object", "title": "Input", "properties": properties, "required": list(required)},
        **schemas}}}


def one(prop: dict, *, required: bool = False, **schemas: dict):
    [field] = input_fields(openapi({"x": prop}, required=["x"] if required else [], **schemas))
    return field


GUIDANCE = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 10}, {"type": "null"}], "default": None,
            "title": "Guidance"}
STEPS = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 50}, {"type": "null"}], "default": None,
         "title": "Num Inference Steps"}
IMAGE_INPUT = {"type": "array", "items": {"type": "string", "format": "uri"}, "default": [],
               "title": "Image Input"}
LORA_SCALES = {"type": "array", "items": {"type": "number", "minimum": -1, "maximum": 3}, "title": "Lora Scales"}
SECRET = {"type": "string", "format": "password", "x-cog-secret": True, "writeOnly": True, "title": "Hf Token"}
ENUM_REF = {"allOf": [{"$ref": "#/components/schemas/num_outputs"}], "default": 1}
ENUM_SCHEMAS = {"num_outputs": {"title": "num_outputs", "description": "An enumeration.", "type": "integer",
                                "enum": [1, 2, 4]}}

# (schema, extra component schemas, kind, (minimum, maximum), form text -> expected value or error)
SHAPES = [
    pytest.param(GUIDANCE, {}, "number", (0, 10),
                 [("3.5", 3.5), ("", None), ("10", 10.0), ("11", "Must be at most 10"), ("abc", "Must be a number")],
                 id="anyOf number|null with the range inside the branch"),
    pytest.param(STEPS, {}, "integer", (1, 50),
                 [("20", 20), ("", None), ("80", "Must be at most 50"), ("0", "Must be at least 1"),
                  ("abc", "Must be a whole number"), ("2.5", "Must be a whole number")],
                 id="anyOf integer|null"),
    pytest.param({"type": ["integer", "null"], "minimum": 1, "maximum": 8}, {}, "integer", (1, 8),
                 [("3", 3), ("", None), ("9", "Must be at most 8")], id="OpenAPI 3.1 type list"),
    pytest.param({"type": "number", "nullable": True, "maximum": 1}, {}, "number", (None, 1),
                 [("0.25", 0.25), ("", None), ("2", "Must be at most 1")], id="OpenAPI 3.0 nullable"),
    pytest.param({"type": "number", "exclusiveMinimum": 0, "maximum": 2}, {}, "number", (0, 2),
                 [("0.1", 0.1), ("0", "Must be more than 0")], id="exclusiveMinimum as a bound (3.1)"),
    pytest.param({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, {}, "integer", (0, None),
                 [("1", 1), ("0", "Must be more than 0")], id="exclusiveMinimum as a flag (3.0)"),
    pytest.param({"allOf": [{"type": "integer", "minimum": 0, "maximum": 100}, {"minimum": 10}]}, {}, "integer",
                 (10, 100), [("10", 10), ("5", "Must be at least 10")], id="allOf ranges tighten"),
    pytest.param(ENUM_REF, ENUM_SCHEMAS, "choice", (None, None),
                 [("2", 2), ("3", "Choose one of: 1, 2, 4")], id="integer enum through allOf $ref"),
    pytest.param({"allOf": [{"$ref": "#/components/schemas/scale"}], "default": 0.5},
                 {"scale": {"type": "number", "enum": [0.25, 0.5, 1.0]}}, "choice", (None, None),
                 [("1", 1.0), ("0.25", 0.25)], id="number enum through allOf $ref"),
    pytest.param({"$ref": "#/components/schemas/mode"}, {"mode": {"type": "string", "enum": ["fast", "best"]}},
                 "choice", (None, None), [("best", "best"), ("worst", "Choose one of: fast, best")],
                 id="bare $ref to a string enum"),
    pytest.param({"anyOf": [{"$ref": "#/components/schemas/size"}, {"type": "null"}], "default": None},
                 {"size": {"type": "string", "enum": ["1K", "2K"]}}, "choice", (None, None),
                 [("2K", "2K"), ("", None)], id="optional enum (anyOf $ref|null)"),
    pytest.param({"enum": ["a", "b", None]}, {}, "choice", (None, None), [("b", "b"), ("", None)],
                 id="enum listing null"),
    pytest.param({"const": "v2"}, {}, "choice", (None, None), [("v2", "v2")], id="const"),
    pytest.param({"type": "boolean", "default": True}, {}, "boolean", (None, None),
                 [("true", True), ("", False)], id="boolean checkbox"),
    pytest.param({"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None}, {}, "boolean", (None, None),
                 [("true", True), ("false", False), ("", None)], id="optional boolean: yes/no/model default"),
    pytest.param(IMAGE_INPUT, {}, "files", (None, None), [], id="array of uri (several input images)"),
    pytest.param({"type": "string", "format": "uri"}, {}, "file", (None, None),
                 [("https://example.test/a.png", "https://example.test/a.png"), ("", None),
                  ("C:/a.png", "Must be a link to a file (https://...) or an uploaded file")], id="one file"),
    pytest.param({"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}], "default": None}, {}, "file",
                 (None, None), [("data:image/png;base64,AAAA", "data:image/png;base64,AAAA")],
                 id="optional file (anyOf uri|null)"),
    pytest.param(LORA_SCALES, {}, "list", (None, None),
                 [("0.8, 1.0", [0.8, 1.0]), ("0.8 1", [0.8, 1.0]), ("[0.5, 2]", [0.5, 2.0]), ("", None),
                  ("0.8, 4", "Item 2 (4): must be at most 3"), ("0.8, x", "Item 2 (x): must be a number")],
                 id="array of numbers, each range-checked"),
    pytest.param({"type": "array", "items": {"type": "integer"}, "maxItems": 2}, {}, "list", (None, None),
                 [("1, 2", [1, 2]), ("1, 2, 3", "Give at most 2 values")], id="array of integers with maxItems"),
    pytest.param({"type": "array", "items": {"type": "string"}}, {}, "list", (None, None),
                 [("a cat, sitting\na dog", ["a cat, sitting", "a dog"])], id="array of strings: one per line"),
    pytest.param({"type": "array", "items": {"$ref": "#/components/schemas/style"}},
                 {"style": {"type": "string", "enum": ["ink", "oil"]}}, "list", (None, None),
                 [("oil\nink", ["oil", "ink"]), ("clay", "Item 1 (clay): choose one of: ink, oil")],
                 id="array of enum strings"),
    pytest.param(SECRET, {}, "password", (None, None), [("hf_abc ", "hf_abc ")], id="secret (cog Secret)"),
    pytest.param({"type": "string", "format": "password"}, {}, "password", (None, None), [("s3cret", "s3cret")],
                 id="secret (pydantic SecretStr)"),
    pytest.param({"type": "object"}, {}, "json", (None, None),
                 [('{"a": 1}', {"a": 1}), ("{oops", "Must be JSON (Expecting property name enclosed in double "
                                                    "quotes at character 2)")], id="object as JSON"),
    pytest.param({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}, {}, "text", (None, None),
                 [("x", "x"), ("", None)], id="optional string"),
    pytest.param({"type": "string", "maxLength": 3}, {}, "text", (None, None),
                 [("abc", "abc"), ("abcd", "At most 3 characters")], id="string with maxLength"),
    pytest.param({"anyOf": [{"type": "integer", "maximum": 4}, {"type": "number", "maximum": 8}]}, {}, "number",
                 (None, 8), [("7.5", 7.5)], id="anyOf of two numeric kinds widens"),
    pytest.param({}, {}, "text", (None, None), [("anything", "anything")], id="untyped input"),
]


@pytest.mark.parametrize("prop, schemas, kind, bounds, cases", SHAPES)
def test_each_shape_gets_its_control_range_and_json_type(prop, schemas, kind, bounds, cases):
    field = one(prop, **schemas)
    assert field.kind == kind and field.problem is None
    assert (field.minimum, field.maximum) == bounds
    for text, expected in cases:
        values, errors = validate_input([field], {"x": text} if text or kind != "boolean" else {})
        if isinstance(expected, str) and expected not in ("", None) and (
                expected.startswith(("Must", "Choose", "Item", "Give", "At most"))):
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
