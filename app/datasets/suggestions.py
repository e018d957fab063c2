"""Auto-caption suggestions: which images need a caption, and accepting or discarding what a
captioning model suggested (accepting is one undoable history batch)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select, update

from app.datasets import history
from app.datasets.history import EditOutcome, apply_plan, caption_rows
from app.datasets.index import IMAGES, chunks
from app.datasets.models import Dataset, DatasetImage
from app.extensions import db


def uncaptioned_ids(dataset_id: int) -> list[int]:
    return db.session.scalars(select(IMAGES.c.id).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.tag_count == 0,
                                                        IMAGES.c.error.is_(None)).order_by(IMAGES.c.relpath)).all()


def pending_suggestions(dataset_id: int, limit: int | None = None) -> list[DatasetImage]:
    """Images with a suggestion waiting, by name; the first `limit` of them (a page) if given."""
    return db.session.scalars(select(DatasetImage).where(DatasetImage.dataset_id == dataset_id,
                                                         DatasetImage.suggestion.is_not(None))
                              .order_by(DatasetImage.relpath).limit(limit)).all()


def pending_count(dataset_id: int) -> int:
    return db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.suggestion.is_not(None)))


def accept_suggestions(dataset: Dataset, image_ids: Sequence[int] | None, *, root: Path, data_dir: Path,
                       user_id: int) -> EditOutcome:
    """Make the suggested captions of `image_ids` (None: every image with one) real as ONE undoable
    batch, and clear the accepted suggestions (a suggestion whose caption conflicted stays).

    Streamed like `history.edit_captions`: `history.BULK_CHUNK` suggestions are read, written and
    recorded at a time, by id, so accepting a whole auto-captioned dataset keeps memory flat.
    """
    wanted = sorted(set(image_ids)) if image_ids is not None else None
    pending = IMAGES.c.suggestion.is_not(None)
    total = (sum(db.session.scalar(select(func.count()).where(IMAGES.c.dataset_id == dataset.id, pending,
                                                              IMAGES.c.id.in_(part))) for part in chunks(wanted))
             if wanted is not None else pending_count(dataset.id))
    if not total:
        return EditOutcome()
    description = f"Accept {total:,} auto-caption{'s' if total != 1 else ''}"
    outcome = EditOutcome()
    for ids in _chunked_ids(dataset.id, wanted):
        suggestions = {}
        for part in chunks(ids):
            suggestions.update(db.session.execute(select(IMAGES.c.id, IMAGES.c.suggestion).where(
                IMAGES.c.dataset_id == dataset.id, pending, IMAGES.c.id.in_(part))).all())
        if not suggestions:
            continue
        plan = [(row, suggestions[row.id]) for row in caption_rows(dataset.id, list(suggestions))]
        outcome.add(apply_plan(dataset, [(row, new) for row, new in plan if new != (row.caption or "")], root=root,
                               data_dir=data_dir, user_id=user_id, kind="suggestion", description=description,
                               batch=outcome.batch))
        accepted = [image_id for part in chunks(list(suggestions)) for image_id, caption in db.session.execute(
            select(IMAGES.c.id, IMAGES.c.caption).where(IMAGES.c.id.in_(part))) if caption == suggestions[image_id]]
        clear_suggestions(accepted)
    return outcome


def _chunked_ids(dataset_id: int, wanted: list[int] | None):
    """Lists of at most `history.BULK_CHUNK` image ids: of `wanted`, or of every image with a suggestion."""
    if wanted is not None:
        for start in range(0, len(wanted), history.BULK_CHUNK):
            yield wanted[start:start + history.BULK_CHUNK]
        return
    last = 0
    while ids := db.session.scalars(select(IMAGES.c.id).where(
            IMAGES.c.dataset_id == dataset_id, IMAGES.c.suggestion.is_not(None), IMAGES.c.id > last)
            .order_by(IMAGES.c.id).limit(history.BULK_CHUNK)).all():
        yield ids
        last = ids[-1]


def clear_all_suggestions(dataset_id: int) -> None:
    """Discard every suggestion of the dataset (one statement, whatever its size)."""
    db.session.execute(update(IMAGES).where(IMAGES.c.dataset_id == dataset_id, IMAGES.c.suggestion.is_not(None))
                       .values(suggestion=None))
    db.session.commit()


def clear_suggestions(image_ids: Sequence[int]) -> None:
    for chunk in chunks(list(image_ids)):
        db.session.execute(update(IMAGES).where(IMAGES.c.id.in_(chunk)).values(suggestion=None))
    db.session.commit()
