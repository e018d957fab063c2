"""Auto-caption suggestions: which images need a caption, and accepting or discarding what a
captioning model suggested (accepting is one undoable history batch)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select, update

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
    """Make the suggested captions real (one undoable batch) and clear the accepted suggestions."""
    query = select(IMAGES.c.id, IMAGES.c.suggestion).where(IMAGES.c.dataset_id == dataset.id, IMAGES.c.suggestion.is_not(None))
    suggestions = dict(db.session.execute(query).all())
    if image_ids is not None:
        suggestions = {i: text for i, text in suggestions.items() if i in set(image_ids)}
    if not suggestions:
        return EditOutcome()
    plan = [(row, suggestions[row.id]) for row in caption_rows(dataset.id, list(suggestions))]
    outcome = apply_plan(dataset, [(row, new) for row, new in plan if new != (row.caption or "")], root=root,
                     data_dir=data_dir, user_id=user_id, kind="suggestion",
                     description=f"Accept {len(plan)} auto-caption{'s' if len(plan) != 1 else ''}")
    now = db.session.execute(select(IMAGES.c.id, IMAGES.c.caption).where(IMAGES.c.id.in_(list(suggestions)))).all()
    clear_suggestions([image_id for image_id, caption in now if caption == suggestions[image_id]])
    return outcome


def clear_suggestions(image_ids: Sequence[int]) -> None:
    for chunk in chunks(list(image_ids)):
        db.session.execute(update(IMAGES).where(IMAGES.c.id.in_(chunk)).values(suggestion=None))
    db.session.commit()
