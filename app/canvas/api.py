"""The endpoints canvas.js calls: JSON (tile listings, staged variations, accept/discard, undo/redo,
import) and images (tiles, previews, the unknown-area overlay, exports).

Errors the user can fix are raised as `BadInput` and answered as ``{"error": message}`` with its
status; a stale write answers 409 with ``{"error": …, "stale": true}``.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, request, url_for
from flask_login import current_user

from app.auth.access import child_or_404, owned_or_404
from app.canvas import bp, history, staging
from app.canvas.models import Canvas, CanvasVariation
from app.canvas.params import BadInput, int_arg, parse_frame
from app.canvas import imports
from app.canvas.pipeline import known_overlay, png_bytes
from app.canvas.pngstream import export_png
from app.canvas.staging import AlreadyAccepted, NotNewest
from app.canvas.tiles import TILE_LIMIT, NotFound, OutOfRange, StaleWrite, TileStore
from app.files import send_data_file
from app.uploads import UploadRejected, read_image_upload

# One listing answers for at most this many tiles (a 4K screen at the finest level needs ~60).
MAX_LISTED_TILES = 64 * 64
MAX_EXPORT_SIDE, MAX_EXPORT_PIXELS = 1 << 16, 1 << 30
STALE_ACCEPT = ("The canvas under this frame changed since this variation was made (an undo, an import or "
                "another tab). Accept anyway to paste it over what is there now, or discard it.")


@bp.errorhandler(BadInput)
def bad_input(error: BadInput):
    return jsonify(error=str(error)), error.status


@bp.errorhandler(OutOfRange)
def out_of_range(error: OutOfRange):
    return jsonify(error=str(error)), 400


# ---- tiles ----------------------------------------------------------------------------------------


@bp.get("/<int:canvas_id>/tiles")
def tiles(canvas_id):
    """The tiles of a level in a rectangle of tile indices (end exclusive), with their versions."""
    canvas = owned_or_404(Canvas, canvas_id)
    store = staging.tile_store()
    level = int_arg(request.args, "level", 0, store.levels, "level")
    tx0, ty0 = (int_arg(request.args, name, -TILE_LIMIT - 1, TILE_LIMIT + 1, name) for name in ("tx0", "ty0"))
    tx1, ty1 = (int_arg(request.args, name, -TILE_LIMIT - 1, TILE_LIMIT + 1, name) for name in ("tx1", "ty1"))
    if tx1 <= tx0 or ty1 <= ty0:
        raise BadInput("The tile range is empty: tx1 and ty1 must be greater than tx0 and ty0.")
    if (tx1 - tx0) * (ty1 - ty0) > MAX_LISTED_TILES:
        raise BadInput(f"Ask for at most {MAX_LISTED_TILES} tiles at once.")
    head = store.head(canvas.id)
    refs = store.tiles_in(canvas.id, level, tx0, ty0, tx1, ty1)
    return jsonify(head=head, level=level, tiles=[[ref.tx, ref.ty, ref.version] for ref in refs])


@bp.get("/<int:canvas_id>/tiles/<int:level>/<int(signed=True):tx>/<int(signed=True):ty>/<int:version>.png")
def tile(canvas_id, level, tx, ty, version):
    canvas = owned_or_404(Canvas, canvas_id)
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
    canvas = owned_or_404(Canvas, canvas_id)
    x, y, width, height = _frame(request.args)
    overlay, amount = known_overlay(staging.tile_store().read_region(canvas.id, x, y, width, height))
    response = Response(png_bytes(overlay, 1), mimetype="image/png")
    response.headers["X-Canvas-Known"] = amount
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- staging ------------------------------------------------------------------------------------


@bp.get("/<int:canvas_id>/staging")
def staged(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    return jsonify(variations=_staged_json(canvas))


@bp.get("/<int:canvas_id>/variations/<int:variation_id>/preview")
def preview(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    mimetype = "image/webp" if variation.preview_path.endswith(".webp") else "image/png"
    return send_data_file(variation.preview_path, mimetype=mimetype, immutable=True)


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/accept")
def accept(canvas_id, variation_id):
    """Paste a staged variation onto the canvas, one undo step. A set-aside one (another of its
    generation is accepted) is accepted *instead* when ``instead`` names the accepted one: that
    accept is undone and replaced, if it is still the newest canvas change."""
    canvas = owned_or_404(Canvas, canvas_id)
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    if variation.status != CanvasVariation.STAGED:
        raise BadInput(f"This variation was already {variation.status}.", 409)
    store = staging.tile_store()
    force = request.form.get("force") == "1"
    replaced = variation.request.accepted_variation_id
    instead = replaced is not None and request.form.get("instead", type=int) == replaced
    try:
        if instead:
            undone_rev, head = staging.accept_instead(store, variation, force=force)
            history.forget_canvas_step(canvas.id, current_user.id, undone_rev)
        else:
            head = staging.accept(store, variation, force=force)
    except StaleWrite:
        return jsonify(error=STALE_ACCEPT, stale=True), 409
    except AlreadyAccepted as exc:
        return jsonify(error=str(exc), already_accepted=True, variations=_staged_json(canvas)), 409
    except NotNewest as exc:
        raise BadInput(str(exc), 409) from None
    history.record_canvas(store, canvas.id, current_user.id, head, staging.accept_description(variation))
    what = f"variation {variation.output_index + 1}"
    return jsonify(**_state(store, canvas), variations=_staged_json(canvas),
                   accepted=f"Accepted {what} instead." if instead else f"Accepted {what}.")


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/discard")
def discard(canvas_id, variation_id):
    """Discard a variation, staged, set aside or accepted (an accepted one stays on the canvas)."""
    canvas = owned_or_404(Canvas, canvas_id)
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    if variation.status == CanvasVariation.DISCARDED:
        raise BadInput("This variation was already discarded.", 409)
    staging.discard([variation])
    return jsonify(variations=_staged_json(canvas))


@bp.post("/<int:canvas_id>/staging/discard")
def discard_all(canvas_id):
    """Discard every variation shown (staged, set aside and accepted)."""
    canvas = owned_or_404(Canvas, canvas_id)
    staging.discard([variation for variation, _ in staging.kept(canvas.id)])
    return jsonify(variations=[])


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/save")
def save(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    generation = staging.save_to_gallery(child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id))
    if generation is None:
        raise BadInput("This variation's image is gone, so it cannot be saved.", 410)
    return jsonify(saved=True, gallery=url_for("generate.gallery"))


def _staged_json(canvas: Canvas) -> list[dict]:
    """The variations to show: staged, and those kept after an accept (accepted, set aside) until
    discarded, each with its ``state``; ``accepted_id`` names its generation's accepted variation."""
    return [{
        "id": v.id, "request": v.request_id, "index": v.output_index, "outputs": staging.output_count(v.request),
        "label": staging.variation_label(v), "state": state, "accepted_id": v.request.accepted_variation_id,
        "x": v.request.x, "y": v.request.y, "width": v.request.width, "height": v.request.height,
        "base_revision": v.request.base_revision, "model": v.request.model_used,
        "prompt": v.request.model_input.get("prompt", ""), "seed": v.request.model_input.get("seed"),
        "preview": url_for("canvas.preview", canvas_id=canvas.id, variation_id=v.id),
        "accept": url_for("canvas.accept", canvas_id=canvas.id, variation_id=v.id),
        "discard": url_for("canvas.discard", canvas_id=canvas.id, variation_id=v.id),
        "save": url_for("canvas.save", canvas_id=canvas.id, variation_id=v.id),
        "more": url_for("canvas.generate_more", canvas_id=canvas.id, request_id=v.request_id),
        "again": url_for("canvas.make_again", canvas_id=canvas.id, variation_id=v.id),
    } for v, state in staging.kept(canvas.id)]


# ---- history, import, export --------------------------------------------------------------------


@bp.get("/<int:canvas_id>/bounds")
def bounds(canvas_id):
    """The box (x, y, width, height) of everything painted, for "fit all content" and the minimap;
    ``box`` is null for an empty canvas."""
    canvas = owned_or_404(Canvas, canvas_id)
    store = staging.tile_store()
    box = store.bounds(canvas.id)
    head = store.head(canvas.id)
    if box is None:
        return jsonify(box=None, head=head)
    return jsonify(box=[box[0], box[1], box[2] - box[0], box[3] - box[1]], head=head,
                   thumbnail=url_for("canvas.thumbnail", canvas_id=canvas.id, rev=head))


@bp.post("/<int:canvas_id>/import")
def import_image(canvas_id):
    """Put an uploaded image at the frame as one undo step, read and written in bands.

    ``fit``: "cover" scales it to fill the frame (the page first fits the frame to the picture's
    proportions, so nothing is cropped but a few pixels of snapping), "contain" scales it to fit
    inside (the user chose to keep the frame: the rest stays empty for outpainting), "none" puts it
    at full size at the frame's corner.
    """
    canvas = owned_or_404(Canvas, canvas_id)
    x, y, width, height = _frame(request.form)
    storage = request.files.get("image")
    if storage is None or not storage.filename:
        raise BadInput("Choose an image to import.", 422)
    fit = request.form.get("fit") or ("none" if request.form.get("keep_size") else "contain")
    if fit not in imports.FITS:
        raise BadInput("Choose how the picture fits the frame: cover, contain or none.", 422)
    try:
        data, _format = read_image_upload(storage, current_app.config["MAX_IMAGE_UPLOAD_BYTES"])
    except UploadRejected as exc:
        raise BadInput(str(exc), 422) from None
    try:
        source = imports.open_import(data, (width, height), fit)
    except imports.ImportRefused as exc:
        raise BadInput(str(exc), 422) from None
    base = request.form.get("base_revision", type=int)
    store = staging.tile_store()
    source_box = (source.dx, source.dy, source.width, source.height)
    description = f"import of {storage.filename}"[:200]
    try:
        rev = store.write_bands(canvas.id, x + source.dx, y + source.dy, source.width, source.height, source.bands,
                                base_revision=base, mode="over", description=description)
    except StaleWrite as exc:
        return jsonify(error=str(exc), stale=True), 409
    finally:
        del source
        imports.release_memory()
    history.record_canvas(store, canvas.id, current_user.id, rev, description)
    return jsonify(**_state(store, canvas), placed=[x + source_box[0], y + source_box[1], source_box[2], source_box[3]])


@bp.get("/<int:canvas_id>/export.png")
def export(canvas_id):
    """The whole canvas cropped to its content, or a region (x, y, w, h), as a PNG streamed band by band."""
    canvas = owned_or_404(Canvas, canvas_id)
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
    what = "region" if "x" in request.args else "whole canvas"
    response.headers["Content-Disposition"] = (
        f"attachment; filename*=UTF-8''{_download_name(canvas, what, region, store.head(canvas.id))}")
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- helpers ------------------------------------------------------------------------------------


def _frame(source, **limits) -> tuple[int, int, int, int]:
    return parse_frame(source, tile_size=staging.tile_store().tile_size, **limits)


def _state(store: TileStore, canvas: Canvas) -> dict:
    """The canvas head and the user's history: ``history`` {version, can_undo, can_redo, undo, redo}."""
    summary = history.summary(store, canvas.id, current_user.id)
    return {"head": store.head(canvas.id), "can_undo": summary["can_undo"], "can_redo": summary["can_redo"],
            "history": summary}


def _download_name(canvas: Canvas, what: str, region: tuple[int, int, int, int], head: int) -> str:
    """A file name that says what was exported: the canvas, whole or which region, its size and revision,
    e.g. "Harbour - whole canvas 3072x2048 rev 12.png", "Harbour - region 0,0 1024x1024 rev 12.png"."""
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in canvas.name).strip() or "canvas"
    x, y, width, height = region
    where = f"region {x},{y} {width}x{height}" if what == "region" else f"whole canvas {width}x{height}"
    return quote(f"{safe} - {where} rev {head}.png")
