"""Canvas requests parsed and checked: the frame, the painted mask and the generation form, each
turned into plain values or a message the user can act on (the way `GridFilter.from_args` does it).

No Flask here: callers pass the form, the uploaded files and the limits. The frame limits are
also what the page reads (`FRAME_LIMITS`, rendered as ``data-*`` attributes and input bounds).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image

from app.canvas.compose import MASK_BLUR_MAX, available_infill_methods, mask_from_png
from app.canvas.modelchoice import CanvasModel
from app.canvas.pipeline import NOTHING_TO_REPAINT
from app.canvas.tiles import TILE_LIMIT, TileStore
from app.replicate.inputs import with_seed
from app.replicate.schema import Field
from app.replicate.forminput import validate_input

# A frame's sides in pixels: what every current model can take, and what the page lets the user drag.
MIN_FRAME_SIDE, MAX_FRAME_SIDE = 64, 4096
# The limits the page reads too (canvas/page.html puts them in data-* attributes for frame.js, and
# in the inputs' min/max), so Python, the form and the script cannot disagree.
FRAME_LIMITS = {"frame_min": MIN_FRAME_SIDE, "frame_max": MAX_FRAME_SIDE, "mask_blur_max": MASK_BLUR_MAX}
DEFAULT_INFILL = "telea"
# Milliseconds canvas.js waits before sending a mask step again that did not reach the server (no
# connection, a 5xx); after the last it gives up and says so (about a minute in all). The page reads
# them from data-push-retry-ms on #canvas-app.
PUSH_RETRY_MS = (500, 1000, 2000, 4000, 8000, 15000, 30000)

Frame = tuple[int, int, int, int]  # x, y, width, height in canvas pixels


class BadInput(Exception):
    """A request the user can fix; answered with ``str(error)`` and ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def int_arg(source: Mapping[str, str], name: str, low: int, high: int, label: str) -> int:
    """The whole number `source[name]` within [low, high]. Raises BadInput (400) otherwise."""
    raw = source.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{label} must be a whole number.") from None
    if not low <= value <= high:
        raise BadInput(f"{label} must be between {low:,} and {high:,}; it is {value:,}.")
    return value


def parse_frame(source: Mapping[str, str], *, tile_size: int, model: CanvasModel | None = None,
                min_side: int = MIN_FRAME_SIDE, max_side: int = MAX_FRAME_SIDE) -> Frame:
    """(x, y, width, height) from the ``frame_x…`` (the form) or ``x…`` (the API) fields, checked.

    The frame must lie within the canvas's reach (TILE_LIMIT tiles of `tile_size` from the centre)
    and, when `model` is given, within its pixel budget. Raises BadInput (422) with the reason.
    """
    prefix = "frame_" if "frame_x" in source else ""
    names = [prefix + name for name in ("x", "y", "w", "h")]
    if any(source.get(name) in (None, "") for name in names):
        raise BadInput("Give the frame's position and size.", 422)
    try:
        x, y, width, height = (int(source.get(name)) for name in names)
    except ValueError:
        raise BadInput("The frame's position and size must be whole numbers of pixels.", 422) from None
    if not (min_side <= width <= max_side and min_side <= height <= max_side):
        raise BadInput(f"The frame must be {min_side} to {max_side} pixels on each side; it is {width}×{height}.", 422)
    reach = TILE_LIMIT * tile_size
    if max(abs(x), abs(y), abs(x + width), abs(y + height)) > reach:
        raise BadInput(f"The frame is too far out: the canvas reaches {reach:,} pixels from its centre.", 422)
    if model is not None and width * height > model.rules.max_pixels:
        raise BadInput(f"The frame is {width}×{height} ({width * height / 1e6:.2f} MP), but {model.label} takes "
                       f"at most {model.rules.max_pixels / 1e6:.2f} MP: make the frame smaller.", 422)
    return x, y, width, height


def read_painted_mask(storage, size: tuple[int, int], max_bytes: int) -> Image.Image:
    """The uploaded mask (a PNG, white = repaint) as an "L" image of `size`; none sent means nothing
    painted. Raises BadInput: 413 above `max_bytes`, 422 when it is not a PNG of the frame's size."""
    if storage is None or not storage.filename:
        return Image.new("L", size, 0)
    data = storage.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadInput(f"The mask is larger than {max_bytes // (1024 * 1024)} MB.", 413)
    try:
        return mask_from_png(data, size)
    except ValueError as exc:
        raise BadInput(f"{exc}.", 422) from None


def check_worth_sending(store: TileStore, canvas_id: int, frame: Frame, painted: Image.Image,
                        model: CanvasModel) -> None:
    """Refuse at once what the job would refuse: nothing to repaint, or a picture for a text-only
    model. Raises BadInput (422)."""
    if model.can_inpaint and painted.getbbox() is not None:
        return
    alpha = store.read_region(canvas_id, *frame).getchannel("A")
    if not model.can_inpaint and alpha.getbbox() is not None:
        raise BadInput(model.text_only_message, 422)
    # Half-transparent pixels are repainted too (compose.outpaint_mask): only an opaque frame has none.
    if model.can_inpaint and alpha.getextrema() == (255, 255):
        raise BadInput(NOTHING_TO_REPAINT, 422)


@dataclass
class GenerateParams:
    """The canvas's generation form, parsed and checked.

    ``model_input`` is the model's validated input (a seed picked when the model takes one and the
    user left it blank); ``frame`` is (x, y, width, height); ``painted`` the mask the user painted
    ("L", frame-sized, white = repaint); ``mask_blur`` in pixels (0–MASK_BLUR_MAX). ``errors`` maps
    a form field (or "frame", "mask") to its message; when it is not empty the rest is not usable.
    """

    model_input: dict
    frame: Frame | None
    infill: str
    mask_blur: int | None
    colour_match: bool
    painted: Image.Image | None
    errors: dict[str, str]

    @classmethod
    def from_form(cls, form: Mapping[str, str], files: Mapping, *, model: CanvasModel, fields: list[Field],
                  store: TileStore, canvas_id: int, max_mask_bytes: int) -> GenerateParams:
        values, errors = validate_input(fields, form)
        frame = painted = None
        try:
            frame = parse_frame(form, tile_size=store.tile_size, model=model)
        except BadInput as exc:
            errors["frame"] = str(exc)
        infill = form.get("infill", DEFAULT_INFILL)
        if infill not in available_infill_methods():
            errors["infill"] = "Choose one of the infill methods offered."
        mask_blur = _whole_number(form.get("mask_blur"))
        if mask_blur is None or not 0 <= mask_blur <= MASK_BLUR_MAX:
            errors["mask_blur"] = f"The mask blur must be a whole number from 0 to {MASK_BLUR_MAX} pixels."
        if frame is not None:
            try:
                painted = read_painted_mask(files.get("mask"), (frame[2], frame[3]), max_mask_bytes)
                check_worth_sending(store, canvas_id, frame, painted, model)
            except BadInput as exc:
                errors["mask"] = str(exc)
        if not errors:
            with_seed(fields, values)  # so every variation can be made again
        return cls(model_input=values, frame=frame, infill=infill, mask_blur=mask_blur,
                   colour_match=form.get("colour_match") is not None, painted=painted, errors=errors)

    def remembered(self, model_ref: str) -> dict:
        """The choices the canvas keeps (``Canvas.settings``) to start the page where the user left it;
        the seed is left out so the next request gets a new one."""
        return {"model": model_ref, "input": {name: value for name, value in self.model_input.items() if name != "seed"},
                "frame": list(self.frame), "infill": self.infill, "mask_blur": self.mask_blur,
                "colour_match": self.colour_match}


def _whole_number(raw) -> int | None:
    # The same reading as Werkzeug's ``form.get(name, type=int)``: anything int() refuses is None.
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None
