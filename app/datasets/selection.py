"""What another area reads of a dataset to train on it: the images of a scope (all, the filtered ones,
the selected ones) and the items of a training zip, as the export builds them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from app.datasets.grid import GridFilter, filtered_select
from app.datasets.index import dataset_root, existing_ids
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused, resolve_within, roots_for_user
from app.extensions import db
from app.models import User

SCOPES = ("all", "filtered", "selected")


@dataclass(frozen=True)
class ImageFacts:
    """One image as a pre-flight check sees it (a row of the dataset index); what the LoRAs area's
    `preflight` checks. Unknown hash or format: no duplicate or format check for that image."""
    id: int
    relpath: str
    width: int | None
    height: int | None
    error: str | None
    caption: str | None  # None: no caption file
    content_hash: str | None = None
    format: str | None = None


def scope_images(dataset: Dataset, scope: str, args: Mapping[str, str], ids: Sequence[int]) -> tuple[list[ImageFacts], str]:
    """The images of `scope` ("all"; "filtered" by the grid filter in `args`; "selected": `ids`, kept to
    this dataset's), ordered by name, and a phrase naming the scope ("the 3 selected images").
    Raises ValueError for a malformed tag filter."""
    columns = (DatasetImage.id, DatasetImage.relpath, DatasetImage.width, DatasetImage.height, DatasetImage.error,
               DatasetImage.caption, DatasetImage.content_hash, DatasetImage.format)
    query = select(*columns).where(DatasetImage.dataset_id == dataset.id)
    label = "all images"
    if scope == "selected":
        wanted = existing_ids(dataset.id, ids)
        query = query.where(DatasetImage.id.in_(wanted or [-1]))
        label = f"the {len(wanted):,} selected image{'s' if len(wanted) != 1 else ''}"
    elif scope == "filtered":
        grid_filter = GridFilter.from_args(args)
        if grid_filter.problem:
            raise ValueError(grid_filter.problem)
        matching = filtered_select(dataset.id, grid_filter).order_by(None).subquery()
        query = query.where(DatasetImage.id.in_(select(matching.c.id)))
        label = "the filtered images"
    return [ImageFacts(*row) for row in db.session.execute(query.order_by(DatasetImage.relpath))], label


def zip_items(dataset: Dataset, roots: Sequence[Path], image_ids: Sequence[int] | None = None):
    """(items, formats) for `write_training_zip`: (image path, name stem, caption) of every readable
    image (of `image_ids` when given), and the set of their formats. Raises PathRefused when the
    dataset's folder is not under an allowed root any more."""
    owner = db.session.get(User, dataset.user_id)
    root = dataset_root(dataset, [r.path for r in roots_for_user(roots, owner.username)])
    wanted = set(image_ids) if image_ids is not None else None
    query = (select(DatasetImage.id, DatasetImage.relpath, DatasetImage.caption, DatasetImage.error,
                    DatasetImage.format)
             .where(DatasetImage.dataset_id == dataset.id).order_by(DatasetImage.relpath))
    items, formats = [], set()
    for row in db.session.execute(query):
        if row.error or (wanted is not None and row.id not in wanted):
            continue
        try:
            path = resolve_within([root], row.relpath)
        except PathRefused:
            continue
        items.append((path, str(PurePosixPath(row.relpath).with_suffix("")), row.caption))
        formats.add((row.format or "").upper())
    return items, formats
