"""One undo history per canvas and user: mask edits and canvas changes in one linear stack, newest
first, kept in the database so it survives a reload (and another device).

A mask step holds the box it changed and the alpha before and after (zlib, one byte a pixel); the
server applies it to the kept mask (``masks.apply_patch``) on push, undo and redo, so the kept mask
is always the top of the stack. A canvas step names the tile store revision it made; undo and redo
move the tile store's head. Undone steps are the redo branch: any new step (a stroke, an accept, an
import) deletes them, and the tile store's redo branch with them — as in every painting program.

Every change of the history but a new canvas step bumps ``CanvasHistory.version``. A tab passes the version it last saw;
when another tab changed the history since, the change is refused with ``StaleHistory`` (nothing
done) and the tab reloads what is there. Server-made steps (accept, import) pass no version: they
are checked by the tile store's own stale-write rule instead.

Bounds (per canvas and user): at most ``MAX_STEPS`` steps and ``MAX_BYTES`` of mask step data;
beyond them the oldest steps are forgotten (the newest always stays, however large). Undo then goes on through older canvas revisions the
tile store keeps (``keep_revisions``), which are older than every step kept, so the order holds.
Plain functions on the database session; the caller checks ownership.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from app.canvas import masks
from app.canvas.models import CanvasHistory, CanvasStep
from app.canvas.tiles import TileStore
from app.extensions import db

# InvokeAI keeps 64 steps, the tile store 200 revisions; a mask step of a 1024² frame is ~1-40 kB.
MAX_STEPS = 100
MAX_BYTES = 16 * 1024 * 1024
# The largest mask box a step may cover (4096² frame, the frame limit).
MAX_STEP_PIXELS = 4096 * 4096


class StaleHistory(Exception):
    """The history changed since the version the client sent (another tab); nothing was done."""


@dataclass
class Outcome:
    """What an undo or redo did: the step (None: nothing to do) and, for a canvas step, the revision."""

    step: CanvasStep | None
    rev: int | None = None


def version(canvas_id: int, user_id: int) -> int:
    row = db.session.get(CanvasHistory, (canvas_id, user_id))
    return row.version if row else 0


def summary(store: TileStore, canvas_id: int, user_id: int) -> dict:
    """{version, can_undo, can_redo, undo, redo}: the labels of the steps Ctrl+Z / Ctrl+Shift+Z would take."""
    top = _top_done(canvas_id, user_id)
    following = _next_undone(canvas_id, user_id)
    can_undo = top is not None or store.can_undo(canvas_id)
    return {"version": version(canvas_id, user_id), "can_undo": can_undo, "can_redo": following is not None,
            "undo": top.label if top else None, "redo": following.label if following else None}


def claim(canvas_id: int, user_id: int, seen: int | None, *, bump: bool = True) -> int:
    """Take the history for a change: bump its version (the row lock on PostgreSQL, the write lock on
    SQLite, held until the caller commits). Raises StaleHistory when ``seen`` (None: no check) is not
    the current version. Returns the new version. ``bump=False`` takes the lock only."""
    table = CanvasHistory.__table__
    condition = [table.c.canvas_id == canvas_id, table.c.user_id == user_id]
    if seen is not None:
        condition.append(table.c.version == seen)
    done = db.session.execute(db.update(table).where(*condition)
                              .values(version=table.c.version + (1 if bump else 0))
                              .execution_options(synchronize_session=False)).rowcount
    if done == 1:
        db.session.expire_all()
        return version(canvas_id, user_id)
    if db.session.get(CanvasHistory, (canvas_id, user_id)) is None and seen in (None, 0):
        db.session.add(CanvasHistory(canvas_id=canvas_id, user_id=user_id, version=1 if bump else 0))
        db.session.flush()
        return 1 if bump else 0
    db.session.rollback()
    raise StaleHistory()


def push_mask(store: TileStore, data_dir: Path, canvas_id: int, user_id: int, seen: int | None, *, label: str,
              box: tuple[int, int, int, int], data: bytes, key: str | None = None) -> CanvasStep:
    """Add a mask edit: ``box`` (x, y, width, height) and ``data`` = zlib(before ‖ after alpha). Applies
    it to the kept mask, drops the redo branch. ``key`` (the page's name for the step, at most 64
    characters) makes the push idempotent: when a step of this key is in the history already (the
    page sends a push again whose answer it never got), that step is returned and nothing changes.
    Raises ValueError for data that does not fit the box, StaleHistory as ``claim``."""
    x, y, width, height = box
    if width < 1 or height < 1 or width * height > MAX_STEP_PIXELS:
        raise ValueError(f"A mask step covers 1 to {MAX_STEP_PIXELS} pixels, not {width} × {height}")
    _, after = split(data, width * height)
    taken = _step_of_key(canvas_id, user_id, key)
    if taken is not None:
        return taken
    try:
        claim(canvas_id, user_id, seen)
    except StaleHistory:
        # The first send of this very push may have won the race against this one (its answer lost).
        taken = _step_of_key(canvas_id, user_id, key)
        if taken is not None:
            return taken
        raise
    _drop_redo(store, canvas_id, user_id)
    step = CanvasStep(canvas_id=canvas_id, user_id=user_id, seq=_next_seq(canvas_id, user_id), kind=CanvasStep.MASK,
                      label=label[:200], x=x, y=y, width=width, height=height, data=data, size=len(data),
                      client_key=key)
    db.session.add(step)
    masks.apply_patch(data_dir, canvas_id, user_id, box, after)
    _bound(canvas_id, user_id)
    db.session.commit()
    return step


def record_canvas(store: TileStore, canvas_id: int, user_id: int, rev: int, label: str) -> CanvasStep | None:
    """Add the canvas change that made revision ``rev`` (the tile store dropped its own redo branch);
    nothing when a step of ``rev`` is there already (a write that changed no pixel made no revision)."""
    known = db.session.scalar(_steps(canvas_id, user_id).where(CanvasStep.kind == CanvasStep.CANVAS,
                                                               CanvasStep.rev == rev))
    if known is not None or rev == 0:
        return known
    # No version bump: a canvas change goes on top of the history whichever tab made it (the tile
    # store checked it against what that tab saw), and a tab's own pushes queued before its answer
    # came must not read as another tab's change.
    claim(canvas_id, user_id, None, bump=False)
    _drop_redo(store, canvas_id, user_id)
    step = CanvasStep(canvas_id=canvas_id, user_id=user_id, seq=_next_seq(canvas_id, user_id),
                      kind=CanvasStep.CANVAS, label=label[:200], rev=rev)
    db.session.add(step)
    _bound(canvas_id, user_id)
    db.session.commit()
    return step


def forget_canvas_step(canvas_id: int, user_id: int, rev: int) -> None:
    """Remove the step of revision ``rev`` (undone and replaced: "accept instead")."""
    db.session.execute(db.delete(CanvasStep).where(CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id,
                                                   CanvasStep.kind == CanvasStep.CANVAS, CanvasStep.rev == rev))


def undo(store: TileStore, data_dir: Path, canvas_id: int, user_id: int, seen: int | None) -> Outcome:
    """Take back the newest step: a mask step's box gets its alpha from before, a canvas step's
    revision is undone in the tile store. With no step left, the tile store's older revisions are
    undone (made before this history, or beyond its bounds), each then kept as a redo step."""
    claim(canvas_id, user_id, seen)
    step = _top_done(canvas_id, user_id)
    if step is None:
        db.session.commit()  # the tile store takes its own lock: on SQLite there is one writer at a time
        undone = store.undo_step(canvas_id)
        if undone is None:
            return Outcome(None)
        lowest = db.session.scalar(db.select(db.func.min(CanvasStep.seq)).where(
            CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id))
        step = CanvasStep(canvas_id=canvas_id, user_id=user_id, seq=(lowest or 1) - 1, kind=CanvasStep.CANVAS,
                          label=undone[0].description, rev=undone[0].rev, undone=True)
        db.session.add(step)
        db.session.commit()
        return Outcome(step, undone[0].rev)
    step.undone = True
    if step.kind == CanvasStep.MASK:
        _apply_mask_step(data_dir, step, undone=True)
        return Outcome(step)
    db.session.commit()
    if store.head(canvas_id) != step.rev:
        # Only a change made outside this history could do this; the step cannot be undone any more.
        return Outcome(step)
    store.undo_step(canvas_id)
    return Outcome(step, step.rev)


def redo(store: TileStore, data_dir: Path, canvas_id: int, user_id: int, seen: int | None) -> Outcome:
    """Re-apply the oldest undone step (the one undone last)."""
    claim(canvas_id, user_id, seen)
    step = _next_undone(canvas_id, user_id)
    if step is None:
        db.session.commit()
        return Outcome(None)
    step.undone = False
    if step.kind == CanvasStep.MASK:
        _apply_mask_step(data_dir, step, undone=False)
        return Outcome(step)
    db.session.commit()
    redone = store.redo_step(canvas_id)
    return Outcome(step, redone[0].rev if redone else None)


def _apply_mask_step(data_dir: Path, step: CanvasStep, *, undone: bool) -> None:
    """Write a mask step's alpha from before (`undone`) or after it into the kept mask's box, and commit."""
    before, after = split(step.data, step.width * step.height)
    masks.apply_patch(data_dir, step.canvas_id, step.user_id, (step.x, step.y, step.width, step.height),
                      before if undone else after)
    db.session.commit()


def split(data: bytes, pixels: int) -> tuple[bytes, bytes]:
    """(before, after) of a mask step's zlib data; ValueError when it is not 2 × ``pixels`` bytes."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, 2 * pixels + 1)  # bounded: a zip bomb stops here
    except zlib.error:
        raise ValueError("The mask step is not zlib data") from None
    if len(raw) != 2 * pixels or inflater.unconsumed_tail:
        raise ValueError(f"The mask step holds {len(raw)} bytes, not 2 × {pixels}")
    return raw[:pixels], raw[pixels:]


def delete_canvas(canvas_id: int) -> None:
    for model in (CanvasStep, CanvasHistory):
        db.session.execute(db.delete(model).where(model.canvas_id == canvas_id))


# ---- helpers ------------------------------------------------------------------------------------


def _steps(canvas_id: int, user_id: int):
    return db.select(CanvasStep).where(CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id)


def _step_of_key(canvas_id: int, user_id: int, key: str | None) -> CanvasStep | None:
    if key is None:
        return None
    return db.session.scalar(_steps(canvas_id, user_id).where(CanvasStep.client_key == key))


def _top_done(canvas_id: int, user_id: int) -> CanvasStep | None:
    return db.session.scalar(_steps(canvas_id, user_id).where(CanvasStep.undone.is_(False))
                             .order_by(CanvasStep.seq.desc()).limit(1))


def _next_undone(canvas_id: int, user_id: int) -> CanvasStep | None:
    return db.session.scalar(_steps(canvas_id, user_id).where(CanvasStep.undone.is_(True))
                             .order_by(CanvasStep.seq).limit(1))


def _next_seq(canvas_id: int, user_id: int) -> int:
    highest = db.session.scalar(db.select(db.func.max(CanvasStep.seq)).where(
        CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id))
    return (highest or 0) + 1


def _drop_redo(store: TileStore, canvas_id: int, user_id: int) -> None:
    """A new step ends the redo branch: the undone steps, and the tile store's undone revisions."""
    db.session.execute(db.delete(CanvasStep).where(CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id,
                                                   CanvasStep.undone.is_(True)))
    db.session.flush()
    if store.can_redo(canvas_id):
        db.session.commit()  # the tile store takes its own lock: release ours first (SQLite has one writer)
        store.drop_redo_branch(canvas_id)


def _bound(canvas_id: int, user_id: int) -> None:
    """Forget the oldest steps beyond MAX_STEPS steps or MAX_BYTES of mask data."""
    db.session.flush()
    rows = db.session.execute(db.select(CanvasStep.id, CanvasStep.size).where(
        CanvasStep.canvas_id == canvas_id, CanvasStep.user_id == user_id).order_by(CanvasStep.seq.desc())).all()
    kept_bytes, doomed = 0, []
    for count, (step_id, size) in enumerate(rows, start=1):
        kept_bytes += size
        if count > MAX_STEPS or (count > 1 and kept_bytes > MAX_BYTES):  # the newest step always stays
            doomed.append(step_id)
    if doomed:
        db.session.execute(db.delete(CanvasStep).where(CanvasStep.id.in_(doomed)))
