"""Canvases, and the generations staged on them until the user accepts or discards a variation.

The pixels and their history live in the tile store (``app.canvas.tiles``); these rows hold what
belongs to a user: the canvas's name and settings, and for every generation the frame it was made
for, the revision it was based on and the files it left under DATA_DIR.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.extensions import db
from app.models import utcnow


class Canvas(db.Model):
    # AUTOINCREMENT: SQLite would otherwise hand a deleted canvas's id to the next one, and a browser
    # would show the old canvas's tiles from its cache (tile URLs are cached forever).
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The head revision the thumbnail file shows; None: no thumbnail made yet.
    thumbnail_revision: Mapped[int | None]
    # Last choices, to start the page where the user left it: model, input, frame, infill, blur.
    settings: Mapped[dict] = mapped_column(JSON, default=dict)

    requests: Mapped[list[CanvasRequest]] = relationship(
        back_populates="canvas", cascade="all, delete-orphan", passive_deletes=True)


class CanvasRequest(db.Model):
    """One generation for a frame of a canvas; its job stages one variation per model output."""

    id: Mapped[int] = mapped_column(primary_key=True)
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvas.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    # The model the user chose and its validated input (no files); the job may fall back to a
    # text-to-image model for an empty frame and records the one it called in model_used.
    model_ref: Mapped[str] = mapped_column(String(200))
    model_input: Mapped[dict] = mapped_column(JSON, default=dict)
    model_used: Mapped[str | None] = mapped_column(String(200))
    mode: Mapped[str | None] = mapped_column(String(16))  # "inpaint" or "text", decided by the job
    x: Mapped[int]
    y: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    infill: Mapped[str] = mapped_column(String(16))
    mask_blur: Mapped[int]
    colour_match: Mapped[bool] = mapped_column(default=False)
    # The head when the job read the frame: accepting after a tile under the frame changed is stale.
    base_revision: Mapped[int | None]
    # Files under DATA_DIR: the mask the user painted (white = repaint) and, once the job ran, the
    # blurred (mask blur) mask results are pasted through.
    mask_path: Mapped[str] = mapped_column(String(500))
    paste_mask_path: Mapped[str | None] = mapped_column(String(500))
    # The variation whose accept is on the canvas now; None while the request is staged. Set by a
    # conditional UPDATE, so of two accepts at once exactly one wins (``staging.accept``).
    accepted_variation_id: Mapped[int | None]
    # How many outputs the model made (set by the job): labels read "seed S, output i of N".
    output_count: Mapped[int | None]
    # "Make again": the one output of the source request this request reproduces (same input and seed).
    only_output: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    canvas: Mapped[Canvas] = relationship(back_populates="requests")
    variations: Mapped[list[CanvasVariation]] = relationship(
        back_populates="request", cascade="all, delete-orphan", passive_deletes=True,
        order_by="CanvasVariation.output_index")


class CanvasVariation(db.Model):
    """One model output of a request, fitted to the frame and staged over it."""

    STAGED, ACCEPTED, DISCARDED = "staged", "accepted", "discarded"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("canvas_request.id", ondelete="CASCADE"), index=True)
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvas.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    # The model's output as made (with its parameters), kept out of the gallery until the user saves it.
    generation_id: Mapped[int | None] = mapped_column(ForeignKey("generation.id", ondelete="SET NULL"))
    output_index: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default=STAGED, index=True)
    # Files under DATA_DIR, both at frame size: the (colour-matched) result accept pastes through the
    # request's paste mask, and the preview of the frame as accepting would leave it.
    result_path: Mapped[str] = mapped_column(String(500))
    preview_path: Mapped[str] = mapped_column(String(500))
    # The revision accepting it made: undoing that revision stages the request's variations again,
    # redoing it accepts this one again.
    accepted_rev: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    request: Mapped[CanvasRequest] = relationship(back_populates="variations")


class CanvasHistory(db.Model):
    """A user's undo history of a canvas: its version, bumped by every change of the history (a new
    step, an undo, a redo, a mask saved), so a tab acting on an older version is refused, not obeyed."""

    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvas.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(default=0)


class CanvasStep(db.Model):
    """One step of a user's undo history of a canvas, newest = highest ``seq``: a mask edit (the
    alpha of the box it changed, before and after) or a canvas change (the tile store revision it
    made). Steps with ``undone`` set are the redo branch; a new step deletes them."""

    MASK, CANVAS = "mask", "canvas"
    __table_args__ = (UniqueConstraint("canvas_id", "user_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    canvas_id: Mapped[int] = mapped_column(ForeignKey("canvas.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(8))
    label: Mapped[str] = mapped_column(String(200))
    undone: Mapped[bool] = mapped_column(default=False)
    # A canvas step: the revision it made.
    rev: Mapped[int | None]
    # A mask step: the box it changed on the canvas (pixels) and zlib(alpha before ‖ alpha after),
    # one byte a pixel, row by row; ``size`` is len(data), for the history's byte bound.
    x: Mapped[int | None]
    y: Mapped[int | None]
    width: Mapped[int | None]
    height: Mapped[int | None]
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(default=0)
    # The key the page gave a mask step, so a push it sends again (its answer was lost) is not a
    # second step: the idempotency key of that push.
    client_key: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
