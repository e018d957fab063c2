"""A model's input schema (Cog's openapi) as form fields, and form values checked against them.

Cog has published inputs in several generations of JSON Schema (see
shared/reference/replicate-models-and-trainings.md): plain ``type``; enums behind
``allOf: [{"$ref": ...}]`` (strings, integers or numbers); optional fields as
``anyOf: [{...}, {"type": "null"}]`` with the range inside the branch; OpenAPI 3.1 type lists
(``["integer", "null"]``); OpenAPI 3.0 ``nullable``; arrays with ``items``; secrets
(``format: password``, ``x-cog-secret``). ``input_fields`` walks all of them into one flat
``Field`` per input. The schema comes from whoever published the model, so the walk never raises:
a ``$ref`` cycle, a dangling reference, an unknown type or a malformed keyword makes that one
field ``unsupported`` with a ``problem`` sentence, and junk (a non-numeric ``minimum``, a title
that is a list) is ignored.

Submitted form values are checked against these fields in `app.replicate.forminput`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field as dataclass_field
from typing import Any

# Shown up front; every other input goes under "advanced".
COMMON_FIELDS = frozenset({
    "prompt", "negative_prompt", "image", "mask", "seed", "num_outputs", "aspect_ratio", "width", "height",
    "num_inference_steps", "steps", "guidance", "guidance_scale", "prompt_strength", "strength", "megapixels",
    "output_format", "image_input", "input_image", "input_images", "lora_weights", "lora_scale",
})
PROMPT_FIELDS = frozenset({"prompt", "negative_prompt"})
KINDS = ("text", "textarea", "password", "integer", "number", "boolean", "choice", "file", "files", "list",
         "json", "unsupported")
JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")
_MENTIONS_PROMPT = re.compile(r"\bprompt\b", re.IGNORECASE)
# Unordered inputs go after the ordered ones, in the schema's own order.
_UNORDERED = 10_000
# Bounds that keep a hostile or broken schema from making a huge page or a deep recursion.
MAX_DEPTH = 24
MAX_FIELDS = 400
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_DEFAULT_TEXT = 100_000
# A select with more options than this is a text box checked against the full list instead.
MAX_RENDERED_CHOICES = 200


@dataclass
class Field:
    """One model input as a form control.

    ``kind`` is one of KINDS: "file" is one file (a URL or data URI on the wire), "files" a JSON
    list of them, "list" a JSON list of numbers/strings typed as text, "json" an object or other
    structure typed as JSON, "password" a secret string, "unsupported" an input whose schema
    Tessera cannot read (``problem`` says why; it is never sent). For "list" and "files",
    ``item_kind``/``item_minimum``/``item_maximum``/``item_choices`` describe each item and
    ``min_items``/``max_items`` the count.
    """
    name: str
    kind: str
    title: str
    description: str
    default: Any
    minimum: float | None
    maximum: float | None
    choices: list[Any]
    required: bool
    order: int
    advanced: bool
    nullable: bool = False
    secret: bool = False
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    max_length: int | None = None
    item_kind: str | None = None
    item_minimum: float | None = None
    item_maximum: float | None = None
    item_choices: list[Any] = dataclass_field(default_factory=list)
    min_items: int | None = None
    max_items: int | None = None
    problem: str | None = None

    @property
    def is_file(self) -> bool:
        return self.kind in ("file", "files")

    @property
    def many_choices(self) -> bool:
        """Too many choices for a select: rendered as a text box checked against the list."""
        return len(self.choices) > MAX_RENDERED_CHOICES

    @property
    def shown_choices(self) -> list[Any]:
        return self.choices[:MAX_RENDERED_CHOICES]

    @property
    def range_text(self) -> str:
        """"1–50", "at least 0", "" — the range as the help text shows it."""
        low, high = self.minimum, self.maximum
        if self.kind == "list":
            low, high = self.item_minimum, self.item_maximum
        if low is not None and high is not None:
            return f"{number_text(low)}–{number_text(high)}"
        if low is not None:
            return f"at least {number_text(low)}"
        if high is not None:
            return f"at most {number_text(high)}"
        return ""

    def form_text(self, value: Any) -> str:
        """``value`` as the text of this field's control (the default, or what the user typed)."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if self.kind == "list" and isinstance(value, list):
            separator = "\n" if self.item_kind in ("text", "choice") else ", "
            return separator.join(value_text(item) for item in value)
        if self.kind == "json" or isinstance(value, (list, dict)):
            return json.dumps(value)
        return value_text(value)


def value_text(value: Any) -> str:
    """A JSON value as form text: strings as they are, numbers as written, true/false, JSON otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return number_text(value)
    if value is None:
        return ""
    return json.dumps(value)


def number_text(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else f"{value:g}"


# ---- the walk ---------------------------------------------------------------------------------


class _Unreadable(Exception):
    """The schema of one input cannot be understood; the message says why, for the user."""


def _number(value: Any) -> float | None:
    """A finite number from a schema keyword, else None (strings, booleans, NaN and junk are ignored)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _pointer(document: Any, ref: str) -> Any:
    """The node a local JSON pointer ("#/components/schemas/Name") names, or None."""
    node = document
    for part in ref[2:].split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


class _Walker:
    def __init__(self, document: dict) -> None:
        self.document = document

    def flatten(self, node: Any, depth: int = 0, refs: tuple[str, ...] = ()) -> dict:
        """One schema node with $ref/allOf/anyOf/oneOf merged away. Keys: ``types`` (set of JSON
        types other than null, or None when unstated), ``nullable``, and the keywords that matter."""
        if node is True or node == {}:
            return {"types": None}
        if not isinstance(node, dict):
            raise _Unreadable("its schema is not a JSON Schema object")
        if depth > MAX_DEPTH:
            raise _Unreadable("its schema is nested too deeply to read")
        flat: dict[str, Any] = {"types": None}
        ref = node.get("$ref")
        if ref is not None:
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise _Unreadable(f"it refers to {str(ref)[:100]!r}, outside the model's schema")
            if ref in refs:
                chain = " → ".join((*refs[refs.index(ref):], ref))
                raise _Unreadable(f"its schema refers to itself ($ref cycle: {chain[:300]})")
            target = _pointer(self.document, ref)
            if target is None:
                raise _Unreadable(f"it refers to {ref[:200]}, which the model's schema does not define")
            referenced = self.flatten(target, depth + 1, (*refs, ref))
            # A referenced enum's own title/description ("An enumeration.") is not the input's.
            referenced.pop("title", None)
            referenced.pop("description", None)
            _intersect(flat, referenced)
        all_of = node.get("allOf")
        if isinstance(all_of, list):
            for part in all_of:
                sub = self.flatten(part, depth + 1, refs)
                if isinstance(part, dict) and "$ref" in part:
                    sub.pop("title", None)
                    sub.pop("description", None)
                _intersect(flat, sub)
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if isinstance(branches, list) and branches:
                _intersect(flat, _union([self.flatten(branch, depth + 1, refs) for branch in branches]))
        self._own(flat, node, depth, refs)
        return flat

    def _own(self, flat: dict, node: dict, depth: int, refs: tuple[str, ...]) -> None:
        kind = node.get("type")
        if kind is not None:
            names = kind if isinstance(kind, list) else [kind]
            if not all(isinstance(name, str) for name in names):
                raise _Unreadable("its type is not written as a JSON Schema type name")
            unknown = [name for name in names if name not in JSON_TYPES]
            if unknown:
                raise _Unreadable(f"its type {unknown[0][:60]!r} is not a JSON Schema type")
            types = {name for name in names if name != "null"}
            if "null" in names:
                flat["nullable"] = True
            flat["types"] = types if flat["types"] is None else (flat["types"] & types or types)
            if not types:
                flat["types"] = set()
        if node.get("nullable") is True:
            flat["nullable"] = True
        enum = node.get("enum")
        if isinstance(enum, list) and enum:
            if None in enum:
                flat["nullable"] = True
            flat["enum"] = [value for value in enum if value is not None]
        elif "const" in node:
            flat["enum"] = [node["const"]]
        for key in ("minimum", "maximum"):
            value = _number(node.get(key))
            if value is not None:
                flat[key] = value
        for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = node.get(key)
            if value is True:  # OpenAPI 3.0: a flag on minimum/maximum
                flat[key] = True
            elif _number(value) is not None:  # JSON Schema 2019+/OpenAPI 3.1: the bound itself
                flat[bound], flat[key] = value, True
        for key in ("minItems", "maxItems", "maxLength"):
            value = node.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                flat[key] = value
        for key in ("title", "description", "format"):
            if isinstance(node.get(key), str):
                flat[key] = node[key]
        if "default" in node:
            flat["default"] = node["default"]
        if node.get("x-cog-secret") is True or node.get("writeOnly") is True:
            flat["secret"] = True
        if "x-order" in node:
            flat["x-order"] = node["x-order"]
        if "items" in node:
            flat["items"] = self.flatten(node["items"], depth + 1, refs)


def _intersect(flat: dict, sub: dict) -> None:
    """Merge ``sub`` into ``flat`` as allOf does: both apply, so types narrow and ranges tighten."""
    for key, value in sub.items():
        if key == "types":
            if value is not None:
                flat["types"] = value if flat.get("types") is None else (flat["types"] & value or value)
        elif key == "minimum" and flat.get("minimum") is not None:
            flat["minimum"] = max(flat["minimum"], value)
        elif key == "maximum" and flat.get("maximum") is not None:
            flat["maximum"] = min(flat["maximum"], value)
        elif key == "nullable":
            flat["nullable"] = flat.get("nullable", False) or value
        else:
            flat[key] = value


def _union(branches: list[dict]) -> dict:
    """anyOf/oneOf: a null branch makes the input optional; one other branch is the input; several
    widen it (numbers: the loosest range; enums: all values; otherwise the first kind that takes all)."""
    nullable = any(b.get("types") == set() and b.get("nullable") for b in branches)
    rest = [b for b in branches if not (b.get("types") == set() and b.get("nullable"))]
    if not rest:
        return {"types": set(), "nullable": True}
    if len(rest) == 1:
        merged = dict(rest[0])
    else:
        merged = {"types": None}
        types = [b.get("types") for b in rest]
        if all(t is not None for t in types):
            merged["types"] = set().union(*types)
        for bound in ("minimum", "maximum"):
            values = [b.get(bound) for b in rest]
            if all(v is not None for v in values):
                merged[bound] = min(values) if bound == "minimum" else max(values)
        if all("enum" in b for b in rest):
            merged["enum"] = [value for b in rest for value in b["enum"]]
        first = rest[0]
        for key in ("title", "description", "default", "format", "items", "secret", "x-order"):
            if key in first:
                merged[key] = first[key]
    if nullable:
        merged["nullable"] = True
    return merged


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _humanise(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


def _scalar_kind(name: str, flat: dict) -> str:
    """The control for a non-array value."""
    types = flat.get("types")
    if flat.get("enum"):
        return "choice"
    if types is not None and len(types) > 1:
        # Union of kinds: a string takes anything the user types; else the widest numeric kind.
        if "string" in types:
            types = {"string"}
        elif types <= {"integer", "number"}:
            types = {"number"}
        else:
            types = {sorted(types, key=JSON_TYPES.index)[0]}
    kind = next(iter(types)) if types else None
    if kind in ("integer", "number", "boolean"):
        return kind
    if kind in ("object", "array"):
        return "json"
    fmt = flat.get("format")
    if fmt == "uri":
        return "file"
    if fmt == "password" or flat.get("secret"):
        return "password"
    description = _text(flat.get("description"), MAX_DESCRIPTION)
    if name in PROMPT_FIELDS or name.endswith("_prompt") or _MENTIONS_PROMPT.search(description):
        return "textarea"
    return "text"


def _build(name: str, raw: Any, walker: _Walker, required: bool, position: int) -> Field:
    title_fallback = _humanise(name)
    own_title = _text(raw.get("title"), MAX_TITLE) if isinstance(raw, dict) else ""
    try:
        flat = walker.flatten(raw)
        if flat.get("types") == set():
            raise _Unreadable("it only accepts null")
    except _Unreadable as exc:
        order = raw.get("x-order") if isinstance(raw, dict) else None
        return Field(name=name, kind="unsupported", title=own_title or title_fallback,
                     description=_text(raw.get("description"), MAX_DESCRIPTION) if isinstance(raw, dict) else "",
                     default=None, minimum=None, maximum=None, choices=[], required=required,
                     order=order if isinstance(order, int) and not isinstance(order, bool) else _UNORDERED + position,
                     advanced=name not in COMMON_FIELDS,
                     problem=f"Tessera cannot offer “{own_title or title_fallback}”: {exc}.")
    types = flat.get("types")
    kind = _scalar_kind(name, flat)
    item_kind = None
    item: dict = {}
    if types == {"array"} and not flat.get("enum"):
        item = flat.get("items") or {"types": None}
        item_kind = _scalar_kind(name, item)
        if item_kind == "file":
            kind = "files"
        elif item_kind in ("integer", "number", "text", "textarea", "choice", "boolean"):
            kind, item_kind = "list", ("text" if item_kind == "textarea" else item_kind)
        else:
            kind, item_kind = "json", None
    elif types == {"array"}:
        kind = "choice"
    if flat.get("secret") and kind in ("text", "textarea"):
        kind = "password"
    default = flat.get("default")
    if isinstance(default, str) and len(default) > MAX_DEFAULT_TEXT:
        default = None
    if kind in ("files", "list") and default == []:
        default = None  # an empty list is "nothing": the form leaves the input out
    order = flat.get("x-order")
    choices = list(flat.get("enum") or [])
    return Field(
        name=name, kind=kind, title=_text(flat.get("title"), MAX_TITLE) or own_title or title_fallback,
        description=_text(flat.get("description"), MAX_DESCRIPTION), default=default,
        minimum=flat.get("minimum"), maximum=flat.get("maximum"), choices=choices, required=required,
        order=order if isinstance(order, int) and not isinstance(order, bool) else _UNORDERED + position,
        advanced=name not in COMMON_FIELDS, nullable=bool(flat.get("nullable")),
        secret=kind == "password" or bool(flat.get("secret")),
        exclusive_minimum=bool(flat.get("exclusiveMinimum")), exclusive_maximum=bool(flat.get("exclusiveMaximum")),
        max_length=flat.get("maxLength"), item_kind=item_kind,
        item_minimum=item.get("minimum"), item_maximum=item.get("maximum"),
        item_choices=list(item.get("enum") or []), min_items=flat.get("minItems"), max_items=flat.get("maxItems"),
    )


def input_fields(openapi_schema: Any) -> list[Field]:
    """The inputs of a model version, as form fields in the model's order (x-order).

    Never raises: inputs whose schema cannot be read come back as kind "unsupported" with a
    ``problem``; a schema without readable inputs gives [].
    """
    if not isinstance(openapi_schema, dict):
        return []
    schemas = openapi_schema.get("components")
    schemas = schemas.get("schemas") if isinstance(schemas, dict) else None
    input_schema = schemas.get("Input") if isinstance(schemas, dict) else None
    if not isinstance(input_schema, dict):
        return []
    properties = input_schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required_names = input_schema.get("required")
    required = {name for name in required_names if isinstance(name, str)} if isinstance(required_names, list) else set()
    walker = _Walker(openapi_schema)
    fields = [_build(str(name), raw, walker, name in required, position)
              for position, (name, raw) in enumerate(list(properties.items())[:MAX_FIELDS])]
    return sorted(fields, key=lambda f: f.order)


def field_by_name(fields: list[Field], name: str) -> Field | None:
    return next((f for f in fields if f.name == name), None)


def secret_names(fields: list[Field]) -> set[str]:
    """Inputs whose values must reach Replicate but never a row, a log, a PNG or the gallery."""
    return {f.name for f in fields if f.secret}


def without_secrets(fields: list[Field], values: dict[str, Any]) -> dict[str, Any]:
    secret = secret_names(fields)
    return {name: value for name, value in values.items() if name not in secret}


def output_schema(openapi_schema: Any) -> dict:
    """``components.schemas.Output`` flattened enough to tell a list from one value ({} when unknown)."""
    try:
        node = openapi_schema["components"]["schemas"]["Output"]
        return _Walker(openapi_schema).flatten(node) | {
            "x-cog-array-display": node.get("x-cog-array-display"), "x-cog-array-type": node.get("x-cog-array-type")}
    except (KeyError, TypeError, _Unreadable):
        return {}


def mask_polarity(openapi_schema: dict[str, Any], mask_field: str = "mask") -> str | None:
    """"white-repaints" or "black-repaints" as the mask input's description states it, else None.

    Versions of one model have differed here, so a model's polarity is read from its own schema.
    """
    field = field_by_name(input_fields(openapi_schema), mask_field)
    text = (field.description if field else "").lower()
    for colour in ("white", "black"):
        # "white areas will be inpainted", "White pixels are inpainted", "white = repaint"
        if re.search(rf"{colour}\s+(?:areas|pixels|regions|parts)?\s*(?:will be|are|is|=)\s*"
                     r"(?:inpainted|repainted|repaint|replaced)", text):
            return f"{colour}-repaints"
    return None
