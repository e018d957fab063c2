"""The endpoints canvas.js calls: JSON (tile listings, staged variations, accept/discard, undo/redo,
import) and images (tiles, previews, the unknown-area overlay, exports).

Errors the user can fix are raised as `BadInput` and answered as ``{"error": message}`` with its
status; a stale write answers 409 with ``{"error": …, "stale": true}``.
"""
from __future__ import annotations

import io
from urllib.parse import quote

from flask import Response, abort, current_app, jsonify, request, url_for
from PIL import Image

from app.auth.access import child_or_404, owned_or_404
from app.canvas import bp, staging
from app.canvas.models import Canvas, CanvasVariation
from app.canvas.params import BadInput, int_arg, parse_frame
from app.canvas.pipeline import known_overlay, place_import, png_bytes
from app.canvas.pngstream import export_png
from app.canvas.tiles import TILE_LIMIT, NotFound, OutOfRange, StaleWrite, TileStore
from app.files import send_data_file
from app.uploads import UploadRejected, read_image_upload

# One listing answers for at most this many tiles (a 4K screen at the finest level needs ~60).
MAX_LISTED_TILES = 64 * 64
MAX_EXPORT_SIDE, MAX_EXPORT_PIXELS = 1 << 16, 1 << 30
MAX_IMPORT_PIXELS = 64_000_000
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


@bp.get("/<int:canvas_id>/variations/<int:variation_id>/preview.png")
def preview(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    return send_data_file(variation.preview_path, mimetype="image/png", immutable=True)


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/accept")
def accept(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    variation = _staged_variation(canvas, variation_id)
    store = staging.tile_store()
    try:
        staging.accept(store, variation, force=request.form.get("force") == "1")
    except StaleWrite:
        return jsonify(error=STALE_ACCEPT, stale=True), 409
    return jsonify(**_state(store, canvas), variations=_staged_json(canvas))


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/discard")
def discard(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    staging.discard([_staged_variation(canvas, variation_id)])
    return jsonify(variations=_staged_json(canvas))


@bp.post("/<int:canvas_id>/staging/discard")
def discard_all(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    staging.discard(staging.staged(canvas.id))
    return jsonify(variations=[])


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/save")
def save(canvas_id, variation_id):
    canvas = owned_or_404(Canvas, canvas_id)
    generation = staging.save_to_gallery(child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id))
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


def _staged_variation(canvas: Canvas, variation_id: int) -> CanvasVariation:
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    if variation.status != CanvasVariation.STAGED:
        raise BadInput(f"This variation was already {variation.status}.", 409)
    return variation


# ---- history, import, export --------------------------------------------------------------------


@bp.post("/<int:canvas_id>/undo")
def undo(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    store = staging.tile_store()
    changed = store.undo(canvas.id) is not None
    return jsonify(**_state(store, canvas), changed=changed)


@bp.post("/<int:canvas_id>/redo")
def redo(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    store = staging.tile_store()
    changed = store.redo(canvas.id) is not None
    return jsonify(**_state(store, canvas), changed=changed)


@bp.post("/<int:canvas_id>/import")
def import_image(canvas_id):
    """Put an uploaded image at the frame (scaled to fit it unless asked not to), as one undo step."""
    canvas = owned_or_404(Canvas, canvas_id)
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
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_download_name(canvas)}"
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- helpers ------------------------------------------------------------------------------------


def _frame(source, **limits) -> tuple[int, int, int, int]:
    return parse_frame(source, tile_size=staging.tile_store().tile_size, **limits)


def _state(store: TileStore, canvas: Canvas) -> dict:
    return {"head": store.head(canvas.id), "can_undo": store.can_undo(canvas.id),
            "can_redo": store.can_redo(canvas.id)}


def _download_name(canvas: Canvas) -> str:
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in canvas.name).strip() or "canvas"
    return quote(f"{safe}.png")
