"""The endpoints of the one undo history (mask edits and canvas changes) and of the mask kept with a
canvas for its user: undo, redo, a mask step pushed, the history's state for a tab that fell behind,
the kept mask. The history itself is ``app.canvas.history``; errors answer as in ``api``."""
from __future__ import annotations

import re

from flask import abort, current_app, jsonify, request, url_for
from flask_login import current_user

from app.auth.access import owned_or_404
from app.canvas import bp, history, masks, staging
from app.canvas.api import _frame, _staged_json, _state
from app.canvas.history import StaleHistory
from app.canvas.models import Canvas, CanvasStep
from app.canvas.params import BadInput, int_arg
from app.canvas.tiles import TILE_LIMIT, TileStore
from app.extensions import db
from app.files import send_data_file

STEP_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


@bp.post("/<int:canvas_id>/undo")
def undo(canvas_id):
    """Take back the newest step of the user's history, a mask edit or a canvas change (``kind``);
    ``undone`` names it. ``version``: the history version the page saw (``stale_history`` when another
    tab changed it since: nothing is undone). An undone accept stages its variations again."""
    return _history_step(owned_or_404(Canvas, canvas_id), "undo")


@bp.post("/<int:canvas_id>/redo")
def redo(canvas_id):
    """Re-apply the step undone last (``redone``); a new step after an undo ends the redo branch."""
    return _history_step(owned_or_404(Canvas, canvas_id), "redo")


def _history_step(canvas: Canvas, which: str):
    store = staging.tile_store()
    seen = request.form.get("version", type=int)
    step_function = history.undo if which == "undo" else history.redo
    try:
        outcome = step_function(store, staging.data_dir(), canvas.id, current_user.id, seen)
    except StaleHistory:
        return _stale_history(store, canvas)
    step = outcome.step
    if outcome.rev is not None:
        staging.after_history_step(store, canvas.id, undone=outcome.rev if which == "undo" else None,
                                   redone=outcome.rev if which == "redo" else None)
    answer = {"changed": step is not None, "undone" if which == "undo" else "redone": step.label if step else None,
              "kind": step.kind if step else None}
    if step is not None and step.kind == CanvasStep.MASK:
        answer["step"] = {"id": step.id, "x": step.x, "y": step.y, "width": step.width, "height": step.height}
    return jsonify(**_state(store, canvas), **answer, variations=_staged_json(canvas))


@bp.get("/<int:canvas_id>/history")
def history_state(canvas_id):
    """The history's version and what Ctrl+Z / Ctrl+Shift+Z would take, with the canvas head and the
    kept mask: what a tab reloads after another tab changed things."""
    canvas = owned_or_404(Canvas, canvas_id)
    return jsonify(**_state(staging.tile_store(), canvas), mask=_mask_json(canvas))


@bp.post("/<int:canvas_id>/history/mask")
def push_mask_step(canvas_id):
    """Add a mask edit to the history: ``label``, its box (x, y, w, h) and ``alpha`` = zlib(alpha
    before ‖ alpha after), one byte a pixel, row by row. The kept mask gets it; the redo branch goes.
    ``key`` (optional, 1-64 letters, digits, ``-`` or ``_``) names the step: a push sent again with
    the key of a step already taken answers that step and changes nothing (canvas.js retries pushes
    whose answer was lost)."""
    canvas = owned_or_404(Canvas, canvas_id)
    x, y = (int_arg(request.form, name, -TILE_LIMIT * 4096, TILE_LIMIT * 4096, name) for name in ("x", "y"))
    width, height = (int_arg(request.form, name, 1, 4096, name) for name in ("w", "h"))
    storage = request.files.get("alpha")
    if storage is None:
        raise BadInput("Send the step's alpha as a file.", 422)
    limit = current_app.config["MAX_IMAGE_UPLOAD_BYTES"]
    data = storage.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"The mask step is larger than {limit // (1024 * 1024)} MB.", 413)
    label = " ".join(request.form.get("label", "mask edit").split())[:200] or "mask edit"
    key = request.form.get("key") or None
    if key is not None and not STEP_KEY.fullmatch(key):
        raise BadInput("A step's key is 1 to 64 letters, digits, - or _.", 422)
    store = staging.tile_store()
    try:
        step = history.push_mask(store, staging.data_dir(), canvas.id, current_user.id,
                                 request.form.get("version", type=int), label=label, box=(x, y, width, height),
                                 data=data, key=key)
    except StaleHistory:
        return _stale_history(store, canvas)
    except ValueError as exc:
        raise BadInput(f"{exc}.", 422) from None
    return jsonify(**_state(store, canvas), step=step.id)


def _stale_history(store: TileStore, canvas: Canvas):
    """Another tab changed the history: nothing was done; the answer carries what the page needs to
    show things as they are. 200, not 409: a refusal the page expects and handles, not a failure (a
    4xx would also be logged as a failed resource in the browser's console)."""
    return jsonify(**_state(store, canvas), stale_history=True, mask=_mask_json(canvas),
                   variations=_staged_json(canvas),
                   error="Another tab changed this canvas's history; it is shown here as it is now.")


# ---- the mask, kept with the canvas for its user ------------------------------------------------------


@bp.get("/<int:canvas_id>/mask")
def mask_state(canvas_id):
    """Where the saved mask lies ({x, y, width, height, url}), or ``mask`` null when none is saved."""
    return jsonify(mask=_mask_json(owned_or_404(Canvas, canvas_id)))


def _mask_json(canvas: Canvas) -> dict | None:
    saved = masks.load(staging.data_dir(), canvas.id, current_user.id)
    if saved is None:
        return None
    return {**saved, "url": url_for("canvas.mask_image", canvas_id=canvas.id, v=saved["version"])}


@bp.get("/<int:canvas_id>/mask.png")
def mask_image(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    relpath = masks.image_path(canvas.id, current_user.id)
    if not (staging.data_dir() / relpath).is_file():
        abort(404)
    return send_data_file(relpath, mimetype="image/png")


@bp.post("/<int:canvas_id>/mask")
def save_mask(canvas_id):
    """Keep the painted mask (a PNG, white = painted, as sent to generate) at x, y; an empty mask deletes it."""
    canvas = owned_or_404(Canvas, canvas_id)
    x, y, width, height = _frame(request.form)
    storage = request.files.get("mask")
    if storage is None or not storage.filename:
        raise BadInput("Send the mask as a PNG file.", 422)
    limit = current_app.config["MAX_IMAGE_UPLOAD_BYTES"]
    data = storage.read(limit + 1)
    if len(data) > limit:
        raise BadInput(f"The mask is larger than {limit // (1024 * 1024)} MB.", 413)
    store = staging.tile_store()
    try:
        history.claim(canvas.id, current_user.id, request.form.get("history", type=int))
        version = masks.save(staging.data_dir(), canvas.id, current_user.id, (x, y, width, height), data)
    except StaleHistory:
        return _stale_history(store, canvas)
    except ValueError as exc:
        db.session.rollback()
        raise BadInput(f"{exc}.", 422) from None
    db.session.commit()
    return jsonify(**_state(store, canvas), saved=version is not None, version=version)
