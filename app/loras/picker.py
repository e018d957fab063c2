"""The LoRA picker Generate and the canvas show for models that take ``lora_weights`` (and ``extra_lora``).

Form fields: ``lora_1`` / ``lora_1_scale`` for the main LoRA, ``lora_2`` / ``lora_2_scale`` for the extra
one; a value is the id of one of the user's ready LoRAs. A picked LoRA fills the model's reference and
scale inputs (over whatever was typed there) and puts its trigger word into the prompt if missing.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select

from app.extensions import db
from app.loras.models import Lora
from app.loras.use import Pick, apply_picks, lora_slots

DEFAULT_SCALE = 1.0


def ready_loras(user_id: int) -> list[Lora]:
    return db.session.scalars(select(Lora).where(Lora.user_id == user_id, Lora.status == Lora.READY)
                              .order_by(Lora.name, Lora.id)).all()


def picker_context(user_id: int, input_names: Iterable[str], values: Mapping | None = None) -> dict:
    """What ``loras/_picker.html`` needs: the model's LoRA slots ([] hides the picker), the user's ready
    LoRAs, and the picked ids and scales from `values` (a form, or ``lora=<id>`` from a link)."""
    slots = lora_slots(input_names)
    values = values or {}
    if not slots:
        return {"lora_slots": [], "lora_choices": [], "lora_values": {}}
    picked = {}
    for number in range(1, len(slots) + 1):
        picked[f"lora_{number}"] = str(values.get(f"lora_{number}") or (values.get("lora") if number == 1 else "") or "")
        picked[f"lora_{number}_scale"] = str(values.get(f"lora_{number}_scale") or DEFAULT_SCALE)
    return {"lora_slots": slots, "lora_choices": ready_loras(user_id), "lora_values": picked}


def apply_form_loras(user_id: int, form: Mapping, values: dict, input_names: Iterable[str]) -> list[dict]:
    """Fill `values` (a validated model input, changed in place) with the LoRAs picked in `form`.
    Returns the record a generation keeps ([] when none was picked). Raises ValueError with a sentence
    (an unknown or unready LoRA, a scale out of range, more LoRAs than the model takes)."""
    names = list(input_names)
    slots = lora_slots(names)
    picks = []
    for number in range(1, max(len(slots), 2) + 1):
        raw = str(form.get(f"lora_{number}") or "").strip()
        if not raw:
            continue
        lora = db.session.get(Lora, int(raw)) if raw.isdigit() else None
        if lora is None or lora.user_id != user_id:
            raise ValueError("The chosen LoRA does not exist (any more).")
        if not lora.ready:
            raise ValueError(f"{lora.name} is not ready to use yet ({lora.status}).")
        try:
            scale = float(form.get(f"lora_{number}_scale") or DEFAULT_SCALE)
        except ValueError:
            raise ValueError(f"The LoRA scale of {lora.name} must be a number.") from None
        if scale != scale:  # NaN
            raise ValueError(f"The LoRA scale of {lora.name} must be a number.")
        picks.append(Pick(lora.id, lora.name, lora.reference, lora.trigger, scale))
    if not picks:
        return []
    if not slots:
        raise ValueError("This model takes no LoRA: choose one with a lora_weights input, such as flux-dev-lora.")
    return apply_picks(values, picks, names)
