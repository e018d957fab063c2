"""LoRAs: train one from a dataset on Replicate, import one by reference, and use it when generating.

Public surface for other areas (Generate and the canvas offer a LoRA picker):
- `picker_context(user_id, input_names, values)` — what the picker partial ``loras/_picker.html`` needs;
- `apply_form_loras(user_id, form, values, input_names)` — fill a model input with the LoRAs picked in a
  form (reference, scale, trigger word into the prompt); returns the record a generation keeps.
"""
from flask import Blueprint

bp = Blueprint("loras", __name__)

from app.loras import routes  # noqa: E402,F401
from app.loras.picker import apply_form_loras, picker_context  # noqa: E402

__all__ = ["bp", "apply_form_loras", "picker_context"]
