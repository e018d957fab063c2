"""The canvas list, the canvas page and the endpoints canvas.js calls (JSON, tiles, images)."""
from __future__ import annotations

import io
import random
from urllib.parse import quote

from flask import (Response, abort, current_app, flash, jsonify, make_response, redirect, render_template, request,
                   url_for)
from flask_login import current_user
from PIL import Image

from app.auth import child_or_404, owned_or_404
from app.canvas import bp, staging
from app.canvas.compose import FEATHER_MAX, available_infill_methods, mask_from_png
from app.canvas.modelchoice import DEFAULT_MODEL, CanvasModel, canvas_model, carry_input, form_fields, picker_models
from app.canvas.models import Canvas, CanvasRequest, CanvasVariation
from app.canvas.pipeline import NOTHING_TO_REPAINT, known_overlay, place_import, png_bytes
from app.canvas.pngstream import export_png
from app.canvas.tiles import TILE_LIMIT, NotFound, OutOfRange, StaleWrite, TileStore
from app.extensions import db
from app.files import send_data_file
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.models import Job
from app.replicate.schema import field_by_name, validate_input
from app.uploads import UploadRejected, read_image_upload

NAME_MAX = 120
MIN_FRAME_SIDE, MAX_FRAME_SIDE = 64, 4096
DEFAULT_FRAME = (0, 0, 1024, 1024)
DEFAULT_MASK_BLUR = 8
# One listing answers for at most this many tiles (a 4K screen at the finest level needs ~60).
MAX_LISTED_TILES = 64 * 64
MAX_EXPORT_SIDE, MAX_EXPORT_PIXELS = 1 << 16, 1 << 30
MAX_IMPORT_PIXELS = 64_000_000
SEED_MAX = 2**31 - 1
STALE_ACCEPT = ("The canvas under this frame changed since this variation was made (an undo, an import or "
                "another tab). Accept anyway to paste it over what is there now, or discard it.")


class BadInput(Exception):
    """A request the user can fix; answered with ``str(error)`` and ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@bp.errorhandler(BadInput)
def bad_input(error: BadInput):
    return jsonify(error=str(error)), error.status


@bp.errorhandler(OutOfRange)
def out_of_range(error: OutOfRange):
    return jsonify(error=str(error)), 400


# ---- the list ----------------------------------------------------------------------------------


@bp.get("/")
def index():
    canvases = db.session.scalars(
        db.select(Canvas).where(Canvas.user_id == current_user.id).order_by(Canvas.updated_at.desc())).all()
    store = staging.tile_store()
    # Made again here when stale, so the list's images are files served as they are.
    with_thumbnail = {canvas.id for canvas in canvases if staging.refresh_thumbnail(store, canvas) is not None}
    return render_template("canvas/index.html", canvases=canvases, with_thumbnail=with_thumbnail)


@bp.post("/")
def create():
    name = _name(request.form.get("name")) or "Untitled canvas"
    canvas = Canvas(user_id=current_user.id, name=name, settings={})
    db.session.add(canvas)
    db.session.commit()
    return redirect(url_for("canvas.page", canvas_id=canvas.id))


@bp.post("/<int:canvas_id>/rename")
def rename(canvas_id):
    canvas = _owned_canvas(canvas_id)
    name = _name(request.form.get("name"))
    error = None if name else "Give the canvas a name."
    if name:
        canvas.name = name
        db.session.commit()
    if request.headers.get("HX-Request"):
        has_thumbnail = staging.refresh_thumbnail(staging.tile_store(), canvas) is not None
        return render_template("canvas/_item.html", canvas=canvas, has_thumbnail=has_thumbnail,
                               rename_error=error), 422 if error else 200
    if error:
        flash(error, "error")
    return redirect(url_for("canvas.index"))


@bp.post("/<int:canvas_id>/delete")
def delete(canvas_id):
    canvas = _owned_canvas(canvas_id)
    name = canvas.name
    staging.delete_canvas(staging.tile_store(), canvas)
    flash(f"Deleted “{name}”.", "info")
    return redirect(url_for("canvas.index"))


@bp.get("/<int:canvas_id>/thumbnail.png")
def thumbnail(canvas_id):
    canvas = _owned_canvas(canvas_id)
    relpath = staging.refresh_thumbnail(staging.tile_store(), canvas)
    if relpath is None:
        abort(404)
    return send_data_file(relpath, mimetype="image/png")


# ---- the page and its request form ------------------------------------------------------------


@bp.get("/<int:canvas_id>")
def page(canvas_id):
    canvas = _owned_canvas(canvas_id)
    settings = canvas.settings or {}
    store = staging.tile_store()
    context = _form_context(canvas, settings.get("model") or DEFAULT_MODEL, dict(settings.get("input") or {}))
    # Generations still under way show their progress again after a reload.
    unfinished = db.session.scalars(
        db.select(Job).join(CanvasRequest, CanvasRequest.job_id == Job.id)
        .where(CanvasRequest.canvas_id == canvas.id, Job.status.in_([Job.QUEUED, Job.RUNNING]))
        .order_by(Job.created_at.desc())).all()
    return render_template("canvas/page.html", store=store, head=store.head(canvas.id),
                           can_undo=store.can_undo(canvas.id), can_redo=store.can_redo(canvas.id),
                           unfinished_jobs=unfinished, **context)


@bp.get("/<int:canvas_id>/form")
def model_options(canvas_id):
    """The model's options, swapped in when the user picks another model; typed values the new model
    also takes are kept, the rest start from its defaults."""
    canvas = _owned_canvas(canvas_id)
    context = _form_context(canvas, request.args.get("model") or DEFAULT_MODEL, {})
    typed = request.args.to_dict()
    context["values"] = {name: typed[name] for name in carry_input(typed, context["fields"])}
    return render_template("canvas/_model_options.html", **context)


@bp.post("/<int:canvas_id>/generate")
def generate(canvas_id):
    canvas = _owned_canvas(canvas_id)
    context = _form_context(canvas, request.form.get("model") or DEFAULT_MODEL, request.form.to_dict(),
                            submitted=True)
    model: CanvasModel | None = context["model"]
    if model is None or context["token_missing"]:
        return _form_error(context)
    errors = context["errors"]
    values, errors_by_field = validate_input(context["fields"], request.form)
    errors.update(errors_by_field)
    frame = infill = mask_blur = painted = None
    try:
        frame = _frame(request.form, model=model)
    except BadInput as exc:
        errors["frame"] = str(exc)
    infill = request.form.get("infill", "telea")
    if infill not in available_infill_methods():
        errors["infill"] = "Choose one of the infill methods offered."
    mask_blur = request.form.get("mask_blur", type=int)
    if mask_blur is None or not 0 <= mask_blur <= FEATHER_MAX:
        errors["mask_blur"] = f"The mask blur must be a whole number from 0 to {FEATHER_MAX} pixels."
    if frame is not None:
        try:
            painted = _painted_mask(frame)
            _check_worth_sending(canvas, frame, painted, model)
        except BadInput as exc:
            errors["mask"] = str(exc)
    if errors:
        return _form_error(context)
    if field_by_name(context["fields"], "seed") is not None and values.get("seed") is None:
        values["seed"] = random.randint(0, SEED_MAX)  # so every variation can be made again
    colour_match = request.form.get("colour_match") is not None
    canvas_request = staging.create_request(canvas, model_ref=model.ref, model_input=values, frame=frame,
                                            painted=painted, infill=infill, mask_blur=mask_blur,
                                            colour_match=colour_match)
    remembered = {name: value for name, value in values.items() if name != "seed"}
    canvas.settings = {"model": model.ref, "input": remembered, "frame": list(frame), "infill": infill,
                       "mask_blur": mask_blur, "colour_match": colour_match}
    try:
        job = _enqueue(canvas_request)
    except QueueUnavailable as exc:
        context["note"] = str(exc)
        return _form_error(context, status=503)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<int:canvas_id>/requests/<int:request_id>/more")
def generate_more(canvas_id, request_id):
    """The same frame, mask and options again with a new seed."""
    canvas = _owned_canvas(canvas_id)
    source = child_or_404(CanvasRequest, request_id, canvas_id=canvas.id)
    model_input = dict(source.model_input)
    if "seed" in model_input:
        model_input["seed"] = random.randint(0, SEED_MAX)
    try:
        job = _enqueue(staging.copy_request(source, model_input))
    except QueueUnavailable as exc:
        return render_template("canvas/_notice.html", message=str(exc)), 503
    return render_template("jobs/_status.html", job=job)


def _enqueue(canvas_request: CanvasRequest):
    prompt = " ".join(str(canvas_request.model_input.get("prompt", "")).split())
    title = "Canvas: " + (prompt[:60] + "…" if len(prompt) > 60 else prompt or canvas_request.model_ref)
    db.session.commit()  # the request must exist before a worker can pick the job up
    job = enqueue_job(user_id=current_user.id, kind="canvas.generate", title=title,
                      task="app.canvas.tasks.run_canvas_generation", params={"request_id": canvas_request.id})
    canvas_request.job_id = job.id
    db.session.commit()
    return job


def _form_context(canvas: Canvas, ref: str, values: dict, *, submitted: bool = False) -> dict:
    """What the form needs; ``values`` are the model's input (and, when ``submitted``, the whole form)."""
    inpaint_models, text_models = picker_models(current_user.id)
    model, fields, note = None, [], None
    try:
        model, all_fields, note = canvas_model(current_user.id, ref)
        fields = form_fields(model, all_fields)
    except LookupError as exc:
        note = str(exc)
    settings = canvas.settings or {}
    frame = _frame_values(values, settings.get("frame") or DEFAULT_FRAME)
    blending = values if submitted else settings
    return {
        "canvas": canvas, "inpaint_models": inpaint_models, "text_models": text_models, "model": model,
        "model_ref": ref, "fields": fields, "values": values, "errors": {}, "note": note, "frame": frame,
        "token_missing": not current_app.config["REPLICATE_API_TOKEN"],
        "infill_methods": available_infill_methods(),
        "infill": blending.get("infill") or "telea",
        "mask_blur": blending.get("mask_blur", DEFAULT_MASK_BLUR),
        "colour_match": bool(blending.get("colour_match")),
        "feather_max": FEATHER_MAX,
    }


def _frame_values(values: dict, saved) -> dict:
    names = ("frame_x", "frame_y", "frame_w", "frame_h")
    return {name: values.get(name, saved[index]) for index, name in enumerate(names)}


def _form_error(context: dict, status: int = 422):
    response = make_response(render_template("canvas/_form.html", **context), status)
    # The error belongs in the form, not in the job list the form normally targets.
    response.headers["HX-Retarget"] = "#canvas-form"
    response.headers["HX-Reswap"] = "outerHTML"
    return response


def _painted_mask(frame: tuple[int, int, int, int]) -> Image.Image:
    """The uploaded mask (white = repaint) checked against the frame; none sent means nothing painted."""
    storage = request.files.get("mask")
    size = frame[2], frame[3]
    if storage is None or not storage.filename:
        return Image.new("L", size, 0)
    limit = current_app.config["MAX_IMAGE_UPLOAD_BYTES"]
    data = storage.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"The mask is larger than {limit // (1024 * 1024)} MB.", 413)
    try:
        return mask_from_png(data, size)
    except ValueError as exc:
        raise BadInput(f"{exc}.", 422) from None


def _check_worth_sending(canvas: Canvas, frame, painted: Image.Image, model: CanvasModel) -> None:
    """Refuse at once what the job would refuse: nothing to repaint, or a picture for a text-only model."""
    if model.can_inpaint and painted.getbbox() is not None:
        return
    known = staging.tile_store().known_mask(canvas.id, *frame)
    if not model.can_inpaint and known.getbbox() is not None:
        raise BadInput(model.text_only_message, 422)
    if model.can_inpaint and known.getextrema() == (255, 255):
        raise BadInput(NOTHING_TO_REPAINT, 422)


# ---- tiles ----------------------------------------------------------------------------------------


@bp.get("/<int:canvas_id>/tiles")
def tiles(canvas_id):
    """The tiles of a level in a rectangle of tile indices (end exclusive), with their versions."""
    canvas = _owned_canvas(canvas_id)
    store = staging.tile_store()
    level = _int_arg(request.args, "level", 0, store.levels, "level")
    tx0, ty0 = (_int_arg(request.args, name, -TILE_LIMIT - 1, TILE_LIMIT + 1, name) for name in ("tx0", "ty0"))
    tx1, ty1 = (_int_arg(request.args, name, -TILE_LIMIT - 1, TILE_LIMIT + 1, name) for name in ("tx1", "ty1"))
    if tx1 <= tx0 or ty1 <= ty0:
        raise BadInput("The tile range is empty: tx1 and ty1 must be greater than tx0 and ty0.")
    if (tx1 - tx0) * (ty1 - ty0) > MAX_LISTED_TILES:
        raise BadInput(f"Ask for at most {MAX_LISTED_TILES} tiles at once.")
    head = store.head(canvas.id)
    refs = store.tiles_in(canvas.id, level, tx0, ty0, tx1, ty1)
    return jsonify(head=head, level=level, tiles=[[ref.tx, ref.ty, ref.version] for ref in refs])


@bp.get("/<int:canvas_id>/tiles/<int:level>/<int(signed=True):tx>/<int(signed=True):ty>/<int:version>.png")
def tile(canvas_id, level, tx, ty, version):
    canvas = _owned_canvas(canvas_id)
    store = staging.tile_store()
    try:
        path = store.tile_path(canvas.id, level, tx, ty, version)
    except NotFound:
        abort(404)
    # The file of a version never changes, so the browser may keep it for good.
    return send_data_file(path.relative_to(staging.data_dir()), mimetype="image/png", immutable=True)


@bp.get("/<int:canvas_id>/unknown.png")
def unknown(canvas_id):
    """The never-painted part of a frame (opaque where unknown), and how much is known in a header."""
    canvas = _owned_canvas(canvas_id)
    x, y, width, height = _frame(request.args)
    overlay, amount = known_overlay(staging.tile_store().read_region(canvas.id, x, y, width, height))
    response = Response(png_bytes(overlay, 1), mimetype="image/png")
    response.headers["X-Canvas-Known"] = amount
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- staging ------------------------------------------------------------------------------------


@bp.get("/<int:canvas_id>/staging")
def staged(canvas_id):
    canvas = _owned_canvas(canvas_id)
    return jsonify(variations=_staged_json(canvas))


@bp.get("/<int:canvas_id>/variations/<int:variation_id>/preview.png")
def preview(canvas_id, variation_id):
    variation = _owned_variation(_owned_canvas(canvas_id), variation_id)
    return send_data_file(variation.preview_path, mimetype="image/png", immutable=True)


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/accept")
def accept(canvas_id, variation_id):
    canvas = _owned_canvas(canvas_id)
    variation = _staged_variation(canvas, variation_id)
    store = staging.tile_store()
    try:
        staging.accept(store, variation, force=request.form.get("force") == "1")
    except StaleWrite:
        return jsonify(error=STALE_ACCEPT, stale=True), 409
    return jsonify(**_state(store, canvas), variations=_staged_json(canvas))


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/discard")
def discard(canvas_id, variation_id):
    canvas = _owned_canvas(canvas_id)
    staging.discard([_staged_variation(canvas, variation_id)])
    return jsonify(variations=_staged_json(canvas))


@bp.post("/<int:canvas_id>/staging/discard")
def discard_all(canvas_id):
    canvas = _owned_canvas(canvas_id)
    staging.discard(staging.staged(canvas.id))
    return jsonify(variations=[])


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/save")
def save(canvas_id, variation_id):
    canvas = _owned_canvas(canvas_id)
    generation = staging.save_to_gallery(_owned_variation(canvas, variation_id))
    if generation is None:
        raise BadInput("This variation's image is gone, so it cannot be saved.", 410)
    return jsonify(saved=True, gallery=url_for("generate.gallery"))


def _staged_json(canvas: Canvas) -> list[dict]:
    return [{
        "id": v.id, "request": v.request_id, "index": v.output_index,
        "x": v.request.x, "y": v.request.y, "width": v.request.width, "height": v.request.height,
        "base_revision": v.request.base_revision, "model": v.request.model_used,
        "prompt": v.request.model_input.get("prompt", ""), "seed": v.request.model_input.get("seed"),
        "preview": url_for("canvas.preview", canvas_id=canvas.id, variation_id=v.id),
        "accept": url_for("canvas.accept", canvas_id=canvas.id, variation_id=v.id),
        "discard": url_for("canvas.discard", canvas_id=canvas.id, variation_id=v.id),
        "save": url_for("canvas.save", canvas_id=canvas.id, variation_id=v.id),
        "more": url_for("canvas.generate_more", canvas_id=canvas.id, request_id=v.request_id),
    } for v in staging.staged(canvas.id)]


# ---- history, import, export --------------------------------------------------------------------


@bp.post("/<int:canvas_id>/undo")
def undo(canvas_id):
    canvas = _owned_canvas(canvas_id)
    store = staging.tile_store()
    changed = store.undo(canvas.id) is not None
    return jsonify(**_state(store, canvas), changed=changed)


@bp.post("/<int:canvas_id>/redo")
def redo(canvas_id):
    canvas = _owned_canvas(canvas_id)
    store = staging.tile_store()
    changed = store.redo(canvas.id) is not None
    return jsonify(**_state(store, canvas), changed=changed)


@bp.post("/<int:canvas_id>/import")
def import_image(canvas_id):
    """Put an uploaded image at the frame (scaled to fit it unless asked not to), as one undo step."""
    canvas = _owned_canvas(canvas_id)
    x, y, width, height = _frame(request.form)
    storage = request.files.get("image")
    if storage is None or not storage.filename:
        raise BadInput("Choose an image to import.", 422)
    try:
        data, _format = read_image_upload(storage, current_app.config["MAX_IMAGE_UPLOAD_BYTES"])
    except UploadRejected as exc:
        raise BadInput(str(exc), 422) from None
    keep_size = request.form.get("keep_size") is not None
    with Image.open(io.BytesIO(data)) as image:
        if image.width * image.height > MAX_IMPORT_PIXELS:
            raise BadInput(f"The image is {image.width}×{image.height}; import at most "
                           f"{MAX_IMPORT_PIXELS // 1_000_000} megapixels.", 422)
        placed, (dx, dy) = place_import(image, (width, height), keep_size)
    base = request.form.get("base_revision", type=int)
    store = staging.tile_store()
    try:
        store.write_region(canvas.id, x + dx, y + dy, placed, base_revision=base, mode="over",
                           description=f"Imported {storage.filename}"[:200])
    except StaleWrite as exc:
        return jsonify(error=str(exc), stale=True), 409
    return jsonify(**_state(store, canvas))


@bp.get("/<int:canvas_id>/export.png")
def export(canvas_id):
    """The whole canvas cropped to its content, or a region (x, y, w, h), as a PNG streamed band by band."""
    canvas = _owned_canvas(canvas_id)
    store = staging.tile_store()
    if "x" in request.args:
        region = _frame(request.args, min_side=1, max_side=MAX_EXPORT_SIDE)
    else:
        box = store.bounds(canvas.id)
        if box is None:
            raise BadInput("This canvas is empty: there is nothing to export.", 404)
        region = (box[0], box[1], box[2] - box[0], box[3] - box[1])
    if region[2] > MAX_EXPORT_SIDE or region[3] > MAX_EXPORT_SIDE or region[2] * region[3] > MAX_EXPORT_PIXELS:
        raise BadInput(f"The export would be {region[2]}×{region[3]} pixels; export at most "
                       f"{MAX_EXPORT_PIXELS // 1_000_000} megapixels and {MAX_EXPORT_SIDE} pixels a side, "
                       "a frame's region at a time.", 413)
    chunks = export_png(store, canvas.id, region, text={"Software": "Tessera"})
    response = Response(chunks, mimetype="image/png")
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_download_name(canvas)}"
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- helpers ------------------------------------------------------------------------------------


def _owned_canvas(canvas_id: int) -> Canvas:
    return owned_or_404(Canvas, canvas_id)


def _owned_variation(canvas: Canvas, variation_id: int) -> CanvasVariation:
    return child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)


def _staged_variation(canvas: Canvas, variation_id: int) -> CanvasVariation:
    variation = _owned_variation(canvas, variation_id)
    if variation.status != CanvasVariation.STAGED:
        raise BadInput(f"This variation was already {variation.status}.", 409)
    return variation


def _state(store: TileStore, canvas: Canvas) -> dict:
    return {"head": store.head(canvas.id), "can_undo": store.can_undo(canvas.id),
            "can_redo": store.can_redo(canvas.id)}


def _name(raw: str | None) -> str:
    return " ".join((raw or "").split())[:NAME_MAX]


def _download_name(canvas: Canvas) -> str:
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in canvas.name).strip() or "canvas"
    return quote(f"{safe}.png")


def _int_arg(source, name: str, low: int, high: int, label: str) -> int:
    raw = source.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadInput(f"{label} must be a whole number.") from None
    if not low <= value <= high:
        raise BadInput(f"{label} must be between {low:,} and {high:,}; it is {value:,}.")
    return value


def _frame(source, *, model: CanvasModel | None = None, min_side: int = MIN_FRAME_SIDE,
           max_side: int = MAX_FRAME_SIDE) -> tuple[int, int, int, int]:
    """(x, y, width, height) from frame_x… or x… fields, checked; within the model's budget when given."""
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
    reach = TILE_LIMIT * staging.tile_store().tile_size
    if max(abs(x), abs(y), abs(x + width), abs(y + height)) > reach:
        raise BadInput(f"The frame is too far out: the canvas reaches {reach:,} pixels from its centre.", 422)
    if model is not None and width * height > model.rules.max_pixels:
        raise BadInput(f"The frame is {width}×{height} ({width * height / 1e6:.2f} MP), but {model.label} takes "
                       f"at most {model.rules.max_pixels / 1e6:.2f} MP: make the frame smaller.", 422)
    return x, y, width, height
