"""Which models the canvas offers, and what it needs to know to drive each: its image and mask
inputs, mask polarity and size rules."""
from __future__ import annotations

from dataclasses import dataclass

from app.canvas.pipeline import ModelRules, rules_with_size_choices
from app.replicate.catalog import available_models, mask_polarity, model_schema
from app.replicate.presets import preset_for
from app.replicate.schema import Field, field_by_name, input_fields
from app.replicate.forminput import validate_input

DEFAULT_MODEL = "black-forest-labs/flux-fill-dev"
# Draws an empty frame when the chosen model can only inpaint.
DEFAULT_TEXT_MODEL = "black-forest-labs/flux-schnell"
# For models added by hand, whose limits nobody wrote down: what most current models take.
DEFAULT_RULES = ModelRules(multiple=8, max_pixels=1024 * 1024)
# Inputs the canvas sets from the frame; FLUX Fill [pro]'s "outpaint" would ignore the mask.
FRAME_INPUTS = ("width", "height", "aspect_ratio", "outpaint")


@dataclass(frozen=True)
class CanvasModel:
    ref: str
    label: str
    kind: str  # "inpaint" | "text-to-image"
    image_field: str | None
    mask_field: str | None
    rules: ModelRules

    @property
    def can_inpaint(self) -> bool:
        return self.image_field is not None and self.mask_field is not None

    @property
    def text_only_message(self) -> str:
        return (f"{self.label} can only draw into an empty frame: choose an inpainting model to change or "
                "extend a picture.")

    @property
    def page_inputs(self) -> tuple[str, ...]:
        """Inputs the canvas fills itself, left out of the form."""
        return tuple(name for name in (self.image_field, self.mask_field, *FRAME_INPUTS) if name)


def picker_models(user_id: int) -> tuple[list[CanvasModel], list[CanvasModel]]:
    """(models that can inpaint, text-to-image models for empty frames), without fetching schemas."""
    inpaint, text = [], []
    for choice in available_models(user_id):
        if choice.kind not in ("inpaint", "text-to-image"):
            continue
        preset = preset_for(choice.ref)
        if preset is not None:
            model = CanvasModel(choice.ref, choice.label, choice.kind, preset.image_field, preset.mask_field,
                                ModelRules(preset.size_multiple, preset.max_pixels))
        else:
            fields = ("image", "mask") if choice.kind == "inpaint" else (None, None)
            model = CanvasModel(choice.ref, choice.label, choice.kind, *fields, DEFAULT_RULES)
        (inpaint if model.can_inpaint else text).append(model)
    return inpaint, text


def canvas_model(user_id: int, ref: str) -> tuple[CanvasModel, list[Field], str | None]:
    """The model with its input fields (from its schema) and a note when the schema is not fresh.

    Raises LookupError when the model is not offered or its inputs are unknown.
    """
    choice = next((c for c in available_models(user_id) if c.ref == ref), None)
    if choice is None or choice.kind not in ("inpaint", "text-to-image"):
        raise LookupError(f"Unknown model {ref}: add it on the Generate page first.")
    schema, note = model_schema(user_id, ref)
    fields = input_fields(schema)
    preset = preset_for(ref)
    if preset is not None:
        image_field, mask_field = preset.image_field, preset.mask_field
        rules = ModelRules(preset.size_multiple, preset.max_pixels)
    else:
        image_field = "image" if field_by_name(fields, "image") else None
        mask_field = "mask" if field_by_name(fields, "mask") else None
        rules = DEFAULT_RULES
    width, height = field_by_name(fields, "width"), field_by_name(fields, "height")
    if width is not None and height is not None:
        rules = rules_with_size_choices(rules, width.choices, height.choices)
    return CanvasModel(ref, choice.label, choice.kind, image_field, mask_field, rules), fields, note


def form_fields(model: CanvasModel, fields: list[Field]) -> list[Field]:
    """The inputs the canvas form offers. Secret inputs are not among them: the canvas keeps its
    request's input in rows, and a secret must never be stored (the model's default applies). Nor
    are image inputs other than the frame the canvas sends itself (Generate takes those)."""
    return [field for field in fields
            if field.name not in model.page_inputs and not field.secret and not field.is_file]


def polarity(user_id: int, model: CanvasModel) -> str:
    return mask_polarity(user_id, model.ref)


def carry_input(values: dict, fields: list[Field]) -> dict:
    """The values another model also takes, checked against its fields; the rest keep its defaults."""
    form = {name: ("true" if value is True else str(value)) for name, value in values.items()
            if value is not False and value is not None}
    checked, _errors = validate_input(fields, form)
    return {name: value for name, value in checked.items() if name in values}
