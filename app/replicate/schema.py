"""A model's input schema (Cog's openapi) as form fields, and form values checked against them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

# Shown up front; every other input goes under "advanced".
COMMON_FIELDS = frozenset({
    "prompt", "negative_prompt", "image", "mask", "seed", "num_outputs", "aspect_ratio", "width", "height",
    "num_inference_steps", "steps", "guidance", "guidance_scale", "prompt_strength", "strength", "megapixels",
    "output_format",
})
PROMPT_FIELDS = frozenset({"prompt", "negative_prompt"})
UNCHECKED = frozenset({"off", "false", "0", "no", ""})
_MENTIONS_PROMPT = re.compile(r"\bprompt\b", re.IGNORECASE)
# Unordered inputs go after the ordered ones, in the schema's own order.
_UNORDERED = 10_000


@dataclass
class Field:
    name: str
    kind: str  # "text" | "textarea" | "integer" | "number" | "boolean" | "choice" | "file"
    title: str
    description: str
    default: Any
    minimum: float | None
    maximum: float | None
    choices: list[Any]
    required: bool
    order: int
    advanced: bool


def _resolve(prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The property with its allOf/$ref targets merged in; the property's own keys win."""
    merged: dict[str, Any] = {}
    refs = [item.get("$ref") for item in prop.get("allOf", []) if isinstance(item, dict)]
    refs.append(prop.get("$ref"))
    for ref in refs:
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            target = schemas.get(ref.rsplit("/", 1)[-1], {})
            merged.update({key: value for key, value in target.items() if key not in ("title", "description")})
    merged.update({key: value for key, value in prop.items() if key not in ("allOf", "$ref")})
    return merged


def _kind(name: str, prop: dict[str, Any]) -> str:
    if prop.get("enum"):
        return "choice"
    kind = prop.get("type")
    if kind in ("integer", "number", "boolean"):
        return kind
    if kind == "string" and prop.get("format") == "uri":
        return "file"
    if name in PROMPT_FIELDS or name.endswith("_prompt") or _MENTIONS_PROMPT.search(prop.get("description") or ""):
        return "textarea"
    return "text"


def _humanise(name: str) -> str:
    return name.replace("_", " ").strip().capitalize()


def input_fields(openapi_schema: dict[str, Any]) -> list[Field]:
    """The inputs of a model version, as form fields in the model's order (x-order)."""
    schemas = (openapi_schema or {}).get("components", {}).get("schemas", {})
    input_schema = schemas.get("Input", {})
    required = set(input_schema.get("required") or [])
    fields = []
    for position, (name, raw) in enumerate((input_schema.get("properties") or {}).items()):
        prop = _resolve(raw, schemas)
        order = prop.get("x-order")
        fields.append(Field(
            name=name,
            kind=_kind(name, prop),
            title=prop.get("title") or _humanise(name),
            description=prop.get("description") or "",
            default=prop.get("default"),
            minimum=prop.get("minimum"),
            maximum=prop.get("maximum"),
            choices=list(prop.get("enum") or []),
            required=name in required,
            order=order if isinstance(order, int) else _UNORDERED + position,
            advanced=name not in COMMON_FIELDS,
        ))
    return sorted(fields, key=lambda f: f.order)


def field_by_name(fields: list[Field], name: str) -> Field | None:
    return next((f for f in fields if f.name == name), None)


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


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _coerce(field: Field, raw: str) -> tuple[Any, str | None]:
    """(value, None) or (None, error) for one non-empty form value."""
    if field.kind == "integer":
        try:
            value: Any = int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                return None, "Must be a whole number"
            if not number.is_integer():
                return None, "Must be a whole number"
            value = int(number)
    elif field.kind == "number":
        try:
            value = float(raw)
        except ValueError:
            return None, "Must be a number"
        if not math.isfinite(value):
            return None, "Must be a number"
    elif field.kind == "choice":
        for choice in field.choices:
            if str(choice) == raw:
                return choice, None
        return None, "Choose one of: " + ", ".join(str(choice) for choice in field.choices)
    else:
        return raw, None
    if field.minimum is not None and value < field.minimum:
        return None, f"Must be at least {_number_text(field.minimum)}"
    if field.maximum is not None and value > field.maximum:
        return None, f"Must be at most {_number_text(field.maximum)}"
    return value, None


def validate_input(fields: list[Field], form: Mapping[str, str], *,
                   files: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, errors) for a submitted form. Empty optional inputs are left out so the model's
    default applies; ``files`` holds ready input values (URLs or data URIs) for file inputs."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    files = files or {}
    for field in fields:
        if field.kind == "boolean":
            # A checkbox is sent only when ticked.
            raw = form.get(field.name)
            values[field.name] = raw is not None and str(raw).strip().lower() not in UNCHECKED
            continue
        if field.kind == "file" and files.get(field.name):
            values[field.name] = files[field.name]
            continue
        raw = str(form.get(field.name) or "").strip()
        if not raw:
            if field.required:
                errors[field.name] = "This field is required"
            continue
        if field.kind == "file" and not raw.startswith(("https://", "http://", "data:")):
            errors[field.name] = "Must be a link to a file (https://...) or an uploaded file"
            continue
        value, error = _coerce(field, raw)
        if error is None:
            values[field.name] = value
        else:
            errors[field.name] = error
    return values, errors
