"""The table of model input shapes real Replicate models publish, shared by the schema tests of the
plain module (test_schema_shapes.py) and of the Generate form (test_generate_shapes.py).

Each row: (id, input schema, extra component schemas, control kind, (minimum, maximum),
[(form text, the JSON value sent — None: left out — or the error shown by the field)]).
"""
from __future__ import annotations


def shape(prop, schemas, kind, bounds, cases, *, id):
    return id, prop, schemas, kind, bounds, cases


ERROR_PREFIXES = ("Must", "Choose", "Item", "Give", "At most")


def is_error(expected) -> bool:
    return isinstance(expected, str) and expected.startswith(ERROR_PREFIXES)


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
    shape(GUIDANCE, {}, "number", (0, 10),
                 [("3.5", 3.5), ("", None), ("10", 10.0), ("11", "Must be at most 10"), ("abc", "Must be a number")],
                 id="anyOf number|null with the range inside the branch"),
    shape(STEPS, {}, "integer", (1, 50),
                 [("20", 20), ("", None), ("80", "Must be at most 50"), ("0", "Must be at least 1"),
                  ("abc", "Must be a whole number"), ("2.5", "Must be a whole number")],
                 id="anyOf integer|null"),
    shape({"type": ["integer", "null"], "minimum": 1, "maximum": 8}, {}, "integer", (1, 8),
                 [("3", 3), ("", None), ("9", "Must be at most 8")], id="OpenAPI 3.1 type list"),
    shape({"type": "number", "nullable": True, "maximum": 1}, {}, "number", (None, 1),
                 [("0.25", 0.25), ("", None), ("2", "Must be at most 1")], id="OpenAPI 3.0 nullable"),
    shape({"type": "number", "exclusiveMinimum": 0, "maximum": 2}, {}, "number", (0, 2),
                 [("0.1", 0.1), ("0", "Must be more than 0")], id="exclusiveMinimum as a bound (3.1)"),
    shape({"type": "integer", "minimum": 0, "exclusiveMinimum": True}, {}, "integer", (0, None),
                 [("1", 1), ("0", "Must be more than 0")], id="exclusiveMinimum as a flag (3.0)"),
    shape({"allOf": [{"type": "integer", "minimum": 0, "maximum": 100}, {"minimum": 10}]}, {}, "integer",
                 (10, 100), [("10", 10), ("5", "Must be at least 10")], id="allOf ranges tighten"),
    shape(ENUM_REF, ENUM_SCHEMAS, "choice", (None, None),
                 [("2", 2), ("3", "Choose one of: 1, 2, 4")], id="integer enum through allOf $ref"),
    shape({"allOf": [{"$ref": "#/components/schemas/scale"}], "default": 0.5},
                 {"scale": {"type": "number", "enum": [0.25, 0.5, 1.0]}}, "choice", (None, None),
                 [("1", 1.0), ("0.25", 0.25)], id="number enum through allOf $ref"),
    shape({"$ref": "#/components/schemas/mode"}, {"mode": {"type": "string", "enum": ["fast", "best"]}},
                 "choice", (None, None), [("best", "best"), ("worst", "Choose one of: fast, best")],
                 id="bare $ref to a string enum"),
    shape({"anyOf": [{"$ref": "#/components/schemas/size"}, {"type": "null"}], "default": None},
                 {"size": {"type": "string", "enum": ["1K", "2K"]}}, "choice", (None, None),
                 [("2K", "2K"), ("", None)], id="optional enum (anyOf $ref|null)"),
    shape({"enum": ["a", "b", None]}, {}, "choice", (None, None), [("b", "b"), ("", None)],
                 id="enum listing null"),
    shape({"const": "v2"}, {}, "choice", (None, None), [("v2", "v2")], id="const"),
    shape({"type": "boolean", "default": True}, {}, "boolean", (None, None),
                 [("true", True), ("", False)], id="boolean checkbox"),
    shape({"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None}, {}, "boolean", (None, None),
                 [("true", True), ("false", False), ("", None)], id="optional boolean: yes/no/model default"),
    shape(IMAGE_INPUT, {}, "files", (None, None), [], id="array of uri (several input images)"),
    shape({"type": "string", "format": "uri"}, {}, "file", (None, None),
                 [("https://example.test/a.png", "https://example.test/a.png"), ("", None),
                  ("C:/a.png", "Must be a link to a file (https://...), an uploaded file or a gallery image")], id="one file"),
    shape({"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}], "default": None}, {}, "file",
                 (None, None), [("data:image/png;base64,AAAA", "data:image/png;base64,AAAA")],
                 id="optional file (anyOf uri|null)"),
    shape(LORA_SCALES, {}, "list", (None, None),
                 [("0.8, 1.0", [0.8, 1.0]), ("0.8 1", [0.8, 1.0]), ("[0.5, 2]", [0.5, 2.0]), ("", None),
                  ("0.8, 4", "Item 2 (4): must be at most 3"), ("0.8, x", "Item 2 (x): must be a number")],
                 id="array of numbers, each range-checked"),
    shape({"type": "array", "items": {"type": "integer"}, "maxItems": 2}, {}, "list", (None, None),
                 [("1, 2", [1, 2]), ("1, 2, 3", "Give at most 2 values")], id="array of integers with maxItems"),
    shape({"type": "array", "items": {"type": "string"}}, {}, "list", (None, None),
                 [("a cat, sitting\na dog", ["a cat, sitting", "a dog"])], id="array of strings: one per line"),
    shape({"type": "array", "items": {"$ref": "#/components/schemas/style"}},
                 {"style": {"type": "string", "enum": ["ink", "oil"]}}, "list", (None, None),
                 [("oil\nink", ["oil", "ink"]), ("clay", "Item 1 (clay): choose one of: ink, oil")],
                 id="array of enum strings"),
    shape(SECRET, {}, "password", (None, None), [("hf_abc ", "hf_abc ")], id="secret (cog Secret)"),
    shape({"type": "string", "format": "password"}, {}, "password", (None, None), [("s3cret", "s3cret")],
                 id="secret (pydantic SecretStr)"),
    shape({"type": "object"}, {}, "json", (None, None),
                 [('{"a": 1}', {"a": 1}), ("{oops", "Must be JSON (Expecting property name enclosed in double "
                                                    "quotes at character 2)")], id="object as JSON"),
    shape({"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}, {}, "text", (None, None),
                 [("x", "x"), ("", None)], id="optional string"),
    shape({"type": "string", "maxLength": 3}, {}, "text", (None, None),
                 [("abc", "abc"), ("abcd", "At most 3 characters")], id="string with maxLength"),
    shape({"anyOf": [{"type": "integer", "maximum": 4}, {"type": "number", "maximum": 8}]}, {}, "number",
                 (None, 8), [("7.5", 7.5)], id="anyOf of two numeric kinds widens"),
    shape({}, {}, "text", (None, None), [("anything", "anything")], id="untyped input"),
]
