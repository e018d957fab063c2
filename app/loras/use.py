"""Using a LoRA when generating: which inputs a model has for one, filling them, and naming what was used.

Source for the inputs: models such as black-forest-labs/flux-dev-lora and flux-fill-dev take
``lora_weights`` + ``lora_scale`` and some also ``extra_lora`` + ``extra_lora_scale`` (scales −1…3).
``lora_weights`` accepts a Replicate model ``owner/name`` or ``owner/name/<version id>``, a Hugging
Face or CivitAI model URL, or the URL of a ``.safetensors`` file. The record of what was used follows
the ``<lora:name:scale>`` convention A1111, ComfyUI and CivitAI read from a PNG's ``parameters``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# (reference input, scale input) per slot; slot 0 is the main LoRA.
LORA_SLOTS = (("lora_weights", "lora_scale"), ("extra_lora", "extra_lora_scale"))
SCALE_MIN, SCALE_MAX = -1.0, 3.0
_REPLICATE_REF = re.compile(r"([a-z0-9][a-z0-9._-]*)/([a-z0-9][a-z0-9._-]*)(?:[/:]([0-9a-f]{64}))?", re.IGNORECASE)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ReferenceError(ValueError):
    """A LoRA reference Replicate could not load; the message says what forms work."""


@dataclass(frozen=True)
class Reference:
    source: str  # "replicate" | "huggingface" | "civitai" | "url"
    value: str  # what lora_weights gets
    name: str  # a suggested short name


def parse_reference(text: str) -> Reference:
    """Read a LoRA reference as a user pastes it. Raises ReferenceError for anything a model's
    lora_weights would not load, saying which forms work."""
    text = (text or "").strip()
    match = _REPLICATE_REF.fullmatch(text)
    if match:
        owner, name, version = match.groups()
        value = f"{owner}/{name}/{version}" if version else f"{owner}/{name}"
        return Reference("replicate", value, _short_name(name))
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if parts.scheme in ("https", "http") and host:
        path = parts.path.rstrip("/")
        if host in ("huggingface.co", "www.huggingface.co", "hf.co"):
            segments = [s for s in path.split("/") if s]
            if len(segments) < 2:
                raise ReferenceError("A Hugging Face reference names a model: huggingface.co/<owner>/<model>.")
            return Reference("huggingface", text, _short_name(segments[1]))
        if host in ("civitai.com", "www.civitai.com"):
            found = re.match(r"/models/(\d+)(?:/([^/?#]+))?", path)
            if not found and "/api/download/models/" not in path:
                raise ReferenceError("A CivitAI reference is a model page (civitai.com/models/<id>[/<name>]) "
                                     "or a download link (civitai.com/api/download/models/<id>).")
            number = (found or re.search(r"(\d+)", path))
            name = found.group(2) if found and found.group(2) else f"civitai-{number.group(1) if number else 'model'}"
            return Reference("civitai", text, _short_name(name))
        if path.lower().endswith(".safetensors"):
            return Reference("url", text, _short_name(path.rsplit("/", 1)[-1].rsplit(".", 1)[0]))
        raise ReferenceError(f"{text} is not a LoRA Replicate can load: a URL must be a Hugging Face or CivitAI "
                             "model, or end in .safetensors.")
    raise ReferenceError("Write a Replicate model (owner/name or owner/name/<version id>), a Hugging Face or CivitAI "
                         "model URL, or the URL of a .safetensors file.")


def _short_name(text: str) -> str:
    return _NAME_UNSAFE.sub("-", text).strip("-")[:80] or "lora"


def lora_slots(input_names) -> list[tuple[str, str | None]]:
    """The LoRA slots a model's inputs offer, in order: [("lora_weights", "lora_scale"), …]; the scale
    input is None when the model has none."""
    names = set(input_names)
    return [(ref, scale if scale in names else None) for ref, scale in LORA_SLOTS if ref in names]


def with_trigger(prompt: str, trigger: str) -> str:
    """The prompt with the trigger word in front when it is not in it yet (case-insensitive, whole word)."""
    trigger = (trigger or "").strip()
    if not trigger or re.search(rf"(?<![\w]){re.escape(trigger)}(?![\w])", prompt or "", re.IGNORECASE):
        return prompt or ""
    return f"{trigger}, {prompt}" if (prompt or "").strip() else trigger


@dataclass(frozen=True)
class Pick:
    """A LoRA chosen for a generation: its row id, name, reference, trigger word and scale."""
    id: int | None
    name: str
    reference: str
    trigger: str
    scale: float


def apply_picks(values: dict, picks: list[Pick], input_names, *, add_trigger: bool = True) -> list[dict]:
    """Fill ``values`` (a model input, changed in place) with the picked LoRAs, one per slot the model
    has, and put each trigger word into the prompt when missing. Returns the record kept with the
    generation: [{"id", "name", "reference", "scale", "slot"}]. Raises ValueError when more LoRAs are
    picked than the model has slots, or a scale is out of range."""
    slots = lora_slots(input_names)
    if len(picks) > len(slots):
        raise ValueError(f"This model takes {len(slots)} LoRA{'s' if len(slots) != 1 else ''}; "
                         f"{len(picks)} were chosen.")
    record = []
    for slot, (pick, (ref_input, scale_input)) in enumerate(zip(picks, slots)):
        if not SCALE_MIN <= pick.scale <= SCALE_MAX:
            raise ValueError(f"The LoRA scale of {pick.name} must be between {SCALE_MIN:g} and {SCALE_MAX:g}.")
        values[ref_input] = pick.reference
        if scale_input:
            values[scale_input] = pick.scale
        if add_trigger and "prompt" in values:
            values["prompt"] = with_trigger(str(values.get("prompt") or ""), pick.trigger)
        record.append({"id": pick.id, "name": pick.name, "reference": pick.reference, "scale": pick.scale,
                       "slot": slot})
    return record
