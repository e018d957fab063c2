"""Health that acts: one-click caption fixes, merging tag spellings, excluding or trashing images.
(The trash itself: `routes_trash`; crops to a bucket: `routes_crop`.)"""
from __future__ import annotations

from functools import partial

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, index, tags
from app.datasets.grid import images_with_tag
from app.datasets.history import apply_plan, caption_rows, edit_captions
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused
from app.datasets.routes import data_dir, root_of
from app.datasets.trash import TrashPage, move_to_trash, trash_page
from app.extensions import db
from app.redirects import safe_redirect_target

# Health's one-click fixes: problem key -> (button text, how).
FIXES = {
    "bom": "Rewrite without the byte order mark",
    "not_utf8": "Convert to UTF-8",
    "first_line_empty": "Remove the blank first line",
}


def _back(dataset: Dataset):
    """Back to where the form was (a local path only), else the Health page."""
    back = safe_redirect_target(request.form.get("next"), url_for("datasets.health", dataset_id=dataset.id))
    return redirect(back, 303)


def _ids() -> list[int]:
    return [int(i) for i in request.form.getlist("ids") if i.isdigit()]


def _with_problem(dataset: Dataset, problem: str) -> list[int]:
    return db.session.scalars(db.select(DatasetImage.id).where(
        DatasetImage.dataset_id == dataset.id, DatasetImage.caption_problems.contains(problem))).all()


@bp.post("/<int:dataset_id>/health/fix")
def health_fix(dataset_id):
    """Fix one kind of caption problem in every caption that has it, as one undoable step."""
    dataset = owned_or_404(Dataset, dataset_id)
    problem = request.form.get("problem", "")
    if problem not in FIXES:
        flash("Unknown fix.", "error")
        return _back(dataset)
    ids = _with_problem(dataset, problem)
    root, description = root_of(dataset), f"{FIXES[problem]} ({len(ids)} captions)"
    if problem == "first_line_empty":
        outcome = edit_captions(dataset, ids, tags.drop_leading_blank_lines, root=root, data_dir=data_dir(),
                                user_id=current_user.id, description=description)
    else:
        # The text stays; writing it again is what drops the BOM and turns the bytes into UTF-8.
        plan = [(row, row.caption) for row in caption_rows(dataset.id, ids) if row.caption is not None]
        outcome = apply_plan(dataset, plan, root=root, data_dir=data_dir(), user_id=current_user.id,
                             description=description, kind="bulk")
    flash(f"{FIXES[problem]}: {outcome.summary}.", "error" if outcome.conflicts or outcome.errors else "info")
    return _back(dataset)


@bp.post("/<int:dataset_id>/health/merge")
def health_merge(dataset_id):
    """Spell every variant of a tag the chosen way (long_hair → long hair), as one undoable step."""
    dataset = owned_or_404(Dataset, dataset_id)
    into = request.form.get("into", "").strip()
    variants = [v for v in request.form.getlist("variants") if v.strip() and v.strip() != into]
    if not into or not variants:
        flash("Choose the spelling to keep and the ones to merge into it.", "error")
        return _back(dataset)
    ids = sorted({i for tag in [into, *variants] for i in images_with_tag(dataset.id, tag)})
    outcome = edit_captions(dataset, ids, partial(tags.merge_variants, variants=variants, into=into), root=root_of(dataset),
                            data_dir=data_dir(), user_id=current_user.id,
                            description=f"Merge {', '.join(variants)} into “{into}”")
    flash(f"Merged into “{into}”: {outcome.summary}.", "error" if outcome.conflicts or outcome.errors else "info")
    return _back(dataset)


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
    shared = image.caption_relpath and db.session.scalar(db.select(db.func.count()).where(
        DatasetImage.dataset_id == dataset.id, DatasetImage.caption_relpath == image.caption_relpath,
        DatasetImage.id != image.id))
    try:
        move_to_trash(root_of(dataset), image.relpath, None if shared else image.caption_relpath)
    except (OSError, PathRefused) as exc:
        flash(f"Could not move {image.relpath} to the trash: {getattr(exc, 'message', None) or exc}", "error")
        return _back(dataset)
    relpath = image.relpath
    index.forget_images(dataset, [image.id])
    flash(f"Moved {relpath} to the trash" + (" (its caption stays: another image uses it)" if shared else "")
          + "; restore it from the trash.", "info")
    return _back(dataset)


def trash_entries(dataset: Dataset) -> TrashPage | None:
    """The newest trash entries for Health's short list (the trash page has them all); None if unreadable."""
    try:
        return trash_page(root_of(dataset), 1, per_page=5)
    except (OSError, PathRefused):
        return None
