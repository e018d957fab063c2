"""Requests and staged variations: their rows and their files under DATA_DIR, from creation to accept,
discard or the canvas's deletion. Called by the routes and the job; knows nothing of HTTP."""
from __future__ import annotations

import shutil
from pathlib import Path

from flask import current_app
from PIL import Image

from app.canvas import history, masks
from app.canvas.models import Canvas, CanvasRequest, CanvasVariation
from app.canvas.pipeline import render_thumbnail, save_png
from app.canvas.tiles import TileStore
from app.extensions import db
from app.gallery import Generation

STAGING_DIR = Path("canvas-staging")
THUMBNAIL_DIR = Path("canvas-thumbnails")
TILES_DIR = "canvases"


def tile_store() -> TileStore:
    """The app's tile store (one per app: its settings, a small cache of decoded tiles and the thread
    that builds zoomed-out levels after each change, so an accept waits only for its own tiles)."""
    store = current_app.extensions.get("canvas_tile_store")
    if store is None:
        store = TileStore(db.engine, data_dir() / TILES_DIR, build_levels="background")
        current_app.extensions["canvas_tile_store"] = store
    return store


def data_dir() -> Path:
    """DATA_DIR of the current app; every path this module stores is relative to it."""
    return Path(current_app.config["DATA_DIR"])


def request_dir(request: CanvasRequest) -> Path:
    """Folder of a request's files, relative to DATA_DIR."""
    return STAGING_DIR / str(request.canvas_id) / str(request.id)


def create_request(canvas: Canvas, *, model_ref: str, model_input: dict, frame: tuple[int, int, int, int],
                   painted: Image.Image, infill: str, mask_blur: int, colour_match: bool) -> CanvasRequest:
    """Add (not commit) a request for `frame` (x, y, width, height) and save the painted mask (white =
    repaint) as its mask.png; the caller commits before queueing the job."""
    x, y, width, height = frame
    request = CanvasRequest(canvas_id=canvas.id, user_id=canvas.user_id, model_ref=model_ref,
                            model_input=model_input, x=x, y=y, width=width, height=height, infill=infill,
                            mask_blur=mask_blur, colour_match=colour_match, mask_path="")
    db.session.add(request)
    db.session.flush()  # the id names the folder
    request.mask_path = (request_dir(request) / "mask.png").as_posix()
    save_png(data_dir() / request.mask_path, painted.convert("L"))
    return request


def copy_request(source: CanvasRequest, model_input: dict, only_output: int | None = None) -> CanvasRequest:
    """A new request for the same frame and mask, with its own copy of the mask: "generate more" (a
    new seed), or "make again" (the same input and seed, staging only output ``only_output``)."""
    with Image.open(data_dir() / source.mask_path) as painted:
        request = create_request(source.canvas, model_ref=source.model_ref, model_input=model_input,
                                 frame=(source.x, source.y, source.width, source.height), painted=painted,
                                 infill=source.infill, mask_blur=source.mask_blur, colour_match=source.colour_match)
    request.only_output = only_output
    return request


def output_count(request: CanvasRequest) -> int:
    """How many outputs the request's model call made (its variations, unless it made one again)."""
    return request.output_count or max((v.output_index for v in request.variations), default=0) + 1


def variation_label(variation: CanvasVariation) -> str:
    """"seed S, output i of N": what makes this exact output again (the model draws N from one seed)."""
    seed = variation.request.model_input.get("seed")
    count = output_count(variation.request)
    where = f"output {variation.output_index + 1} of {count}"
    return f"seed {seed}, {where}" if seed is not None else where


class AlreadyAccepted(Exception):
    """Another variation of the same request was accepted first; ``str(error)`` tells the user."""


def kept(canvas_id: int) -> list[tuple[CanvasVariation, str]]:
    """Every variation not discarded, with its state: "staged" (its generation has no accept yet),
    "accepted" (on the canvas) or "set aside" (another of its generation was accepted). Staged ones
    first, oldest generation first; then the others, newest generation first."""
    variations = db.session.scalars(
        db.select(CanvasVariation).where(CanvasVariation.canvas_id == canvas_id,
                                         CanvasVariation.status != CanvasVariation.DISCARDED)
        .order_by(CanvasVariation.request_id, CanvasVariation.output_index)).all()
    states = [(v, variation_state(v)) for v in variations]
    staged_first = [item for item in states if item[1] == "staged"]
    others = [item for item in states if item[1] != "staged"]
    others.sort(key=lambda item: -item[0].request_id)  # stable: output order within a generation
    return staged_first + others


def variation_state(variation: CanvasVariation) -> str:
    if variation.status == CanvasVariation.ACCEPTED:
        return "accepted"
    return "set aside" if variation.request.accepted_variation_id is not None else "staged"


def staged(canvas_id: int) -> list[CanvasVariation]:
    """The variations on show: staged, of requests with no accept on the canvas."""
    return db.session.scalars(
        db.select(CanvasVariation).join(CanvasRequest, CanvasVariation.request_id == CanvasRequest.id)
        .where(CanvasVariation.canvas_id == canvas_id, CanvasVariation.status == CanvasVariation.STAGED,
               CanvasRequest.accepted_variation_id.is_(None))
        .order_by(CanvasVariation.request_id, CanvasVariation.output_index)).all()


def accept(store: TileStore, variation: CanvasVariation, *, force: bool) -> int:
    """Paste the variation through its request's mask as one revision; returns the new head.

    Exactly one accept per request wins, across threads, processes and hosts: the request row is
    claimed with a conditional UPDATE (a row lock on PostgreSQL, the write lock on SQLite) before
    any pixel is written; a loser gets AlreadyAccepted, ``force`` or not. Raises StaleWrite
    (nothing written, the claim released) when a tile under the frame changed since the job read
    it, unless ``force``. The request's other variations stay, set aside: undoing the accept
    stages them all again (``after_undo``).
    """
    request = variation.request
    claimed = db.session.execute(
        db.update(CanvasRequest)
        .where(CanvasRequest.id == request.id, CanvasRequest.accepted_variation_id.is_(None))
        .values(accepted_variation_id=variation.id)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if claimed != 1:
        db.session.refresh(request)
        winner = db.session.get(CanvasVariation, request.accepted_variation_id) if request.accepted_variation_id else None
        which = f"variation {winner.output_index + 1}" if winner is not None else "another variation"
        raise AlreadyAccepted(f"This generation's {which} was accepted just before: only one of a "
                              "generation's variations goes on the canvas. Undo it to choose another.")
    root = data_dir()
    try:
        with Image.open(root / variation.result_path) as result, Image.open(root / request.paste_mask_path) as paste:
            head = store.write_region(
                request.canvas_id, request.x, request.y, result, mask=paste,
                base_revision=None if force else request.base_revision,
                description=accept_description(variation))
    except BaseException:
        db.session.rollback()
        db.session.execute(db.update(CanvasRequest).where(CanvasRequest.id == request.id)
                           .values(accepted_variation_id=None).execution_options(synchronize_session=False))
        db.session.commit()
        raise
    db.session.refresh(request)
    variation.status = CanvasVariation.ACCEPTED
    variation.accepted_rev = head
    db.session.commit()
    forget_unreachable_accepts(store, request.canvas_id)
    return head


class NotNewest(Exception):
    """"Accept instead" of a set-aside variation when the accept it would replace is no longer the
    newest canvas change; ``str(error)`` tells the user."""


def accept_instead(store: TileStore, variation: CanvasVariation, *, force: bool) -> tuple[int, int]:
    """Swap the accepted variation of ``variation``'s generation for this set-aside one: the accept
    on the canvas is undone and this one accepted over the same pixels, the replaced one set aside.
    Returns (the revision undone, the new head). Raises NotNewest when another change followed the
    accept on the canvas (undo back to it first), StaleWrite as ``accept`` (the old accept restored)."""
    request = variation.request
    accepted = db.session.get(CanvasVariation, request.accepted_variation_id)
    if accepted is None or accepted.accepted_rev is None or store.head(request.canvas_id) != accepted.accepted_rev:
        which = f"variation {accepted.output_index + 1}" if accepted is not None else "the accepted variation"
        raise NotNewest(f"The canvas changed after {which} was accepted, so it cannot simply be swapped: undo "
                        "back to that accept to choose another, or save this one to the gallery.")
    undone = store.undo_step(request.canvas_id)
    after_history_step(store, request.canvas_id, undone=undone[0].rev, redone=None)
    db.session.refresh(variation)
    try:
        head = accept(store, variation, force=force)
    except BaseException:
        redone = store.redo_step(request.canvas_id)
        if redone is not None:
            after_history_step(store, request.canvas_id, undone=None, redone=redone[0].rev)
        raise
    return undone[0].rev, head


def accept_description(variation: CanvasVariation) -> str:
    """The revision's description, which the status line shows after "Undid: "."""
    request = variation.request
    prompt = " ".join(str(request.model_input.get("prompt", "")).split())
    text = f"accept of variation {variation.output_index + 1}"
    return f"{text} ({prompt[:80]})" if prompt else text


def after_history_step(store: TileStore, canvas_id: int, undone: int | None, redone: int | None) -> None:
    """Keep staging in step with the history after an undo (of revision ``undone``) or a redo.

    Undoing an accept stages every variation of its request again (the accepted one included);
    redoing it accepts the same variation again and sets the others aside.
    """
    if undone is not None:
        for variation in _accepted_by(canvas_id, undone):
            if variation.status != CanvasVariation.DISCARDED:
                variation.status = CanvasVariation.STAGED
            variation.request.accepted_variation_id = None
    if redone is not None:
        for variation in _accepted_by(canvas_id, redone):
            if variation.status != CanvasVariation.DISCARDED:
                variation.status = CanvasVariation.ACCEPTED
            variation.request.accepted_variation_id = variation.id
    db.session.commit()


def _accepted_by(canvas_id: int, rev: int) -> list[CanvasVariation]:
    return db.session.scalars(db.select(CanvasVariation).where(
        CanvasVariation.canvas_id == canvas_id, CanvasVariation.accepted_rev == rev)).all()


def forget_unreachable_accepts(store: TileStore, canvas_id: int) -> None:
    """Discard what no undo can bring back: the set-aside variations of accepts pruned from the
    history, and staged files of accepted variations whose redo branch was dropped."""
    pruned_through = store.pruned_through(canvas_id)
    old = db.session.scalars(
        db.select(CanvasRequest).where(CanvasRequest.canvas_id == canvas_id,
                                       CanvasRequest.accepted_variation_id.is_not(None))
        .join(CanvasVariation, CanvasVariation.id == CanvasRequest.accepted_variation_id)
        .where(CanvasVariation.accepted_rev <= pruned_through)).all()
    for request in old:
        discard([v for v in request.variations if v.status != CanvasVariation.DISCARDED])


def discard(variations: list[CanvasVariation]) -> None:
    """Discard variations, staged, set aside or accepted (an accepted one stays on the canvas: its
    accept keeps its place in the history, and undoing it still stages the rest of its generation
    again) and delete the files no one needs any more: their staged images, their outputs unless
    saved to the gallery, and the folders of requests that have nothing left to show."""
    root = data_dir()
    requests = {}
    for variation in variations:
        variation.status = CanvasVariation.DISCARDED
        for relpath in (variation.result_path, variation.preview_path):
            (root / relpath).unlink(missing_ok=True)
        generation = db.session.get(Generation, variation.generation_id) if variation.generation_id else None
        if generation is not None and not generation.in_gallery:
            (root / generation.path).unlink(missing_ok=True)
            db.session.delete(generation)
        requests[variation.request_id] = variation.request
    db.session.flush()
    for request in requests.values():
        if all(v.status == CanvasVariation.DISCARDED for v in request.variations):
            shutil.rmtree(root / request_dir(request), ignore_errors=True)
    db.session.commit()


def save_to_gallery(variation: CanvasVariation) -> Generation | None:
    """Put a variation's output in the gallery: staged, set aside or accepted, until it is discarded.

    None when its output is gone (discarded)."""
    if variation.status == CanvasVariation.DISCARDED:
        return None
    generation = db.session.get(Generation, variation.generation_id) if variation.generation_id else None
    if generation is not None:
        generation.in_gallery = True
        db.session.commit()
    return generation


def delete_canvas(store: TileStore, canvas: Canvas) -> None:
    """Remove a canvas with its tiles, history, staged files, unsaved outputs and thumbnail."""
    variations = db.session.scalars(db.select(CanvasVariation).where(CanvasVariation.canvas_id == canvas.id)).all()
    discard(list(variations))
    root = data_dir()
    canvas_id = canvas.id
    history.delete_canvas(canvas_id)
    db.session.delete(canvas)
    db.session.commit()
    store.delete_canvas(canvas_id)
    shutil.rmtree(root / STAGING_DIR / str(canvas_id), ignore_errors=True)
    (root / thumbnail_path(canvas_id)).unlink(missing_ok=True)
    masks.delete_canvas(root, canvas_id)


def thumbnail_path(canvas_id: int) -> Path:
    return THUMBNAIL_DIR / f"{canvas_id}.png"


def refresh_thumbnail(store: TileStore, canvas: Canvas) -> Path | None:
    """The thumbnail file (relative to DATA_DIR) showing the canvas's head, made again when it changed;
    None for an empty canvas."""
    head = store.head(canvas.id)
    relpath = thumbnail_path(canvas.id)
    if canvas.thumbnail_revision != head:
        image = render_thumbnail(store, canvas.id)
        if image is None:
            (data_dir() / relpath).unlink(missing_ok=True)
        else:
            save_png(data_dir() / relpath, image)
        canvas.thumbnail_revision = head
        db.session.commit()
    return relpath if (data_dir() / relpath).is_file() else None


# ---- a canvas's picture as a model input (Generate's "use as input") --------------------------

# An input image larger than this is more than any current image model takes (FLUX Kontext and
# nano-banana work at about 1-2 MP); reading it whole would cost 4 bytes a pixel in the worker.
INPUT_MAX_SIDE, INPUT_MAX_PIXELS = 4096, 16_000_000


def canvas_for_input(user_id: int, canvas_id: int) -> Canvas:
    """The user's canvas whose content can be sent as an input image. Raises LookupError (not the
    user's, or gone) or ValueError (empty, or too large), each with a sentence for the user."""
    canvas = db.session.get(Canvas, canvas_id)
    if canvas is None or canvas.user_id != user_id:
        raise LookupError("That canvas was not found (it may have been deleted).")
    box = tile_store().bounds(canvas.id)
    if box is None:
        raise ValueError(f"The canvas “{canvas.name}” is empty: there is no picture to send.")
    width, height = box[2] - box[0], box[3] - box[1]
    if max(width, height) > INPUT_MAX_SIDE or width * height > INPUT_MAX_PIXELS:
        raise ValueError(f"The canvas “{canvas.name}” holds {width}×{height} pixels, more than an input image "
                         f"can be ({INPUT_MAX_SIDE} a side, {INPUT_MAX_PIXELS // 1_000_000} megapixels): export a "
                         "part of it and upload that instead.")
    return canvas


def canvas_png(user_id: int, canvas_id: int) -> bytes:
    """The canvas's content (cropped to what is painted, transparent where nothing is) as PNG bytes;
    raises as `canvas_for_input` does."""
    import io

    canvas = canvas_for_input(user_id, canvas_id)
    x0, y0, x1, y1 = tile_store().bounds(canvas.id)
    image = tile_store().read_region(canvas.id, x0, y0, x1 - x0, y1 - y0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def recent_canvases(user_id: int, limit: int = 24) -> list[Canvas]:
    """The user's canvases that have a picture, most recently changed first (for an image picker)."""
    store = tile_store()
    canvases = db.session.scalars(db.select(Canvas).where(Canvas.user_id == user_id)
                                  .order_by(Canvas.updated_at.desc()).limit(limit)).all()
    return [canvas for canvas in canvases if store.bounds(canvas.id) is not None]
