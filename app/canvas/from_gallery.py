"""Opening a gallery image on a canvas: a new canvas with the image on it, or beside what an existing
canvas already holds (never over it), with the frame on the image and the page showing it."""
from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, flash, redirect, request, url_for
from flask_login import current_user

from app.auth.access import owned_or_404
from app.canvas import bp, history, imports, staging
from app.canvas.models import Canvas
from app.canvas.params import MAX_FRAME_SIDE, MIN_FRAME_SIDE
from app.extensions import db
from app.gallery import Generation
from app.models import utcnow

GAP = 64  # px of empty canvas between what was there and the image put beside it
NAME_MAX = 120


@bp.app_template_global()
def canvases_for_open() -> list[Canvas]:
    """The current user's canvases, most recently changed first, for "open on a canvas"."""
    return db.session.scalars(db.select(Canvas).where(Canvas.user_id == current_user.id)
                              .order_by(Canvas.updated_at.desc()).limit(200)).all()


def place_beside(bounds: tuple[int, int, int, int] | None) -> tuple[int, int]:
    """Where an image goes on a canvas whose content spans ``bounds`` (x0, y0, x1, y1, end exclusive):
    at the origin of an empty canvas, else GAP px right of the content, top-aligned, on the 64 px grid."""
    if bounds is None:
        return 0, 0
    x = -(-(bounds[2] + GAP) // 64) * 64
    return x, bounds[1] // 64 * 64


@bp.post("/open-image")
def open_image():
    """Put gallery image ``generation_id`` on canvas ``canvas_id`` ("new" makes one) at full size, as
    one undo step, through the canvas's own banded import; redirect to the canvas with the frame on it."""
    generation = owned_or_404(Generation, request.form.get("generation_id", type=int))
    path = Path(current_app.config["DATA_DIR"]) / generation.path
    if not path.is_file():
        abort(404, "The image's file is missing.")
    target = request.form.get("canvas_id", "new")
    canvas = None if target == "new" else owned_or_404(Canvas, int(target) if target.isdigit() else None)
    try:
        source = imports.open_import(path.read_bytes(), (generation.width, generation.height), "none")
    except imports.ImportRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for("generate.gallery_detail", generation_id=generation.id), 303)
    if canvas is None:
        name = " ".join(generation.prompt.split())[:NAME_MAX] or f"Image {generation.id}"
        canvas = Canvas(user_id=current_user.id, name=name, settings={})
        db.session.add(canvas)
        db.session.commit()
    store = staging.tile_store()
    x, y = place_beside(store.bounds(canvas.id))
    try:
        description = f"import of gallery image {generation.id}"
        rev = store.write_bands(canvas.id, x, y, source.width, source.height, source.bands, base_revision=None,
                                mode="over", description=description)
    finally:
        imports.release_memory()
    history.record_canvas(store, canvas.id, current_user.id, rev, description)
    width = max(MIN_FRAME_SIDE, min(source.width, MAX_FRAME_SIDE))
    height = max(MIN_FRAME_SIDE, min(source.height, MAX_FRAME_SIDE))
    canvas.settings = {**(canvas.settings or {}), "frame": [x, y, width, height]}
    canvas.updated_at = utcnow()
    db.session.commit()
    # "show" makes the page start at the frame rather than where the user last looked.
    return redirect(url_for("canvas.page", canvas_id=canvas.id, show=1), 303)
