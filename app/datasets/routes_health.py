"""Health that acts: one-click caption fixes, merging tag spellings, excluding or trashing images.
(The trash itself: `routes_trash`; crops to a bucket: `routes_crop`.)"""
from __future__ import annotations

from flask import flash, redirect, request, url_for

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, index
from app.datasets.bulkedit import BulkEdit
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused
from app.datasets.routes import root_of, start_bulk_edit
from app.datasets.trash import TrashPage, trash_page
from app.datasets.trashing import trash_indexed_image
from app.redirects import safe_redirect_target


def _back(dataset: Dataset):
    """Back to where the form was (a local path only), else the Health page."""
    back = safe_redirect_target(request.form.get("next"), url_for("datasets.health", dataset_id=dataset.id))
    return redirect(back, 303)


def _ids() -> list[int]:
    return [int(i) for i in request.form.getlist("ids") if i.isdigit()]


@bp.post("/<int:dataset_id>/health/fix")
def health_fix(dataset_id):
    """Fix one kind of caption problem in every caption that has it, as one undoable step."""
    dataset = owned_or_404(Dataset, dataset_id)
    return start_bulk_edit(dataset, BulkEdit.from_form(request.form, action="fix"), _back(dataset))


@bp.post("/<int:dataset_id>/health/merge")
def health_merge(dataset_id):
    """Spell every variant of a tag the chosen way (long_hair → long hair), as one undoable step."""
    dataset = owned_or_404(Dataset, dataset_id)
    return start_bulk_edit(dataset, BulkEdit.from_form(request.form, action="merge"), _back(dataset))


@bp.post("/<int:dataset_id>/exclude")
def exclude(dataset_id):
    """Leave images out of training exports (or take them back in); the files stay as they are."""
    dataset = owned_or_404(Dataset, dataset_id)
    ids = index.existing_ids(dataset.id, _ids())
    excluded = request.form.get("excluded", "1") == "1"
    index.set_excluded(dataset.id, ids, excluded)
    what = "excluded from training" if excluded else "included in training again"
    flash(f"{len(ids)} image{'s' if len(ids) != 1 else ''} {what}.", "info")
    return _back(dataset)


@bp.post("/<int:dataset_id>/images/<int:image_id>/trash")
def trash_image(dataset_id, image_id):
    """Move an image (and its own caption) to the dataset's trash folder, from where it can come back."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    try:
        trashed = trash_indexed_image(dataset, image, root_of(dataset))
    except (OSError, PathRefused) as exc:
        flash(f"Could not move {image.relpath} to the trash: {getattr(exc, 'message', None) or exc}", "error")
        return _back(dataset)
    flash(f"{trashed.summary}; restore it from the trash.", "info")
    return _back(dataset)


def trash_entries(dataset: Dataset) -> TrashPage | None:
    """The newest trash entries for Health's short list (the trash page has them all); None if unreadable."""
    try:
        return trash_page(root_of(dataset), 1, per_page=5)
    except (OSError, PathRefused):
        return None
