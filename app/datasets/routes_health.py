"""Health that acts: one-click caption fixes, merging tag spellings, excluding or trashing images,
restoring from the trash, and cropping an image to a training bucket as a new file."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from PIL import Image

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, buckets, index
from app.datasets.captions import CaptionWriteError
from app.datasets.captionwrite import write_caption
from app.datasets.bulkedit import BulkEdit
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused
from app.datasets.routes import root_of, start_bulk_edit, start_scan
from app.datasets.trash import list_trash, move_to_trash, restore
from app.extensions import db
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
          + "; restore it from Health.", "info")
    return _back(dataset)


@bp.post("/<int:dataset_id>/trash/restore")
def trash_restore(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    try:
        entry = restore(root_of(dataset), request.form.get("entry", ""))
    except KeyError:
        flash("That trash entry is gone.", "error")
        return _back(dataset)
    except (OSError, PathRefused) as exc:
        flash(f"Could not restore: {getattr(exc, 'message', None) or exc}", "error")
        return _back(dataset)
    job = start_scan(dataset)
    flash(f"Restored {entry.image}" + ("; it reappears when the rescan ends." if job else "; rescan to see it."), "info")
    return _back(dataset)


def trash_entries(dataset: Dataset):
    try:
        return list_trash(root_of(dataset))
    except (OSError, PathRefused):
        return []


# --- buckets and the crop tool ------------------------------------------------------------------


def _trainer() -> str:
    key = request.values.get("trainer", buckets.DEFAULT_TRAINER)
    return key if key in buckets.TRAINERS else buckets.DEFAULT_TRAINER


@bp.get("/<int:dataset_id>/images/<int:image_id>/crop")
def crop_page(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    trainer = _trainer()
    bucket = buckets.bucket_for(image.width, image.height, trainer) if image.width and image.height else None
    sizes = sorted(set(buckets.kohya_resolutions(1024, 256, 2048) if trainer.startswith("kohya")
                       else buckets.ai_toolkit_resolutions(buckets.TRAINERS[trainer].resolution)),
                   key=lambda s: s[0] / s[1])
    return render_template("datasets/crop.html", dataset=dataset, image=image, trainer=trainer, bucket=bucket,
                           sizes=sizes, trainers=buckets.TRAINERS)


@bp.post("/<int:dataset_id>/images/<int:image_id>/crop")
def crop(dataset_id, image_id):
    """Write the chosen part of the image as a new file beside it (never over it), then rescan."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    back = redirect(url_for("datasets.crop_page", dataset_id=dataset.id, image_id=image.id), 303)
    try:
        width, height = (int(v) for v in request.form.get("bucket", "").split("x"))
        if not (64 <= width <= 8192 and 64 <= height <= 8192):
            raise ValueError
    except ValueError:
        flash("Choose a bucket size.", "error")
        return back
    if not image.width or not image.height:
        flash("This image cannot be read.", "error")
        return back
    box = [request.form.get(name, type=int) for name in ("left", "top", "right", "bottom")]
    if None in box:  # no script ran: the centred crop
        box = list(buckets.focus_crop(image.width, image.height, (width, height)))
    resize = (width, height) if request.form.get("resize") == "1" else None
    try:
        new = buckets.crop_to_new_file(index.resolve_image(root_of(dataset), image.relpath), tuple(box), size=resize)
    except (ValueError, OSError, Image.DecompressionBombError) as exc:
        flash(f"Could not crop: {exc}", "error")
        return back
    # The crop starts with the original's caption, written beside it as the dataset writes captions.
    caption_note = ""
    if image.caption is not None:
        try:
            write_caption(new.with_suffix(dataset.caption_ext), image.caption)
        except CaptionWriteError as exc:
            caption_note = f" (its caption could not be written: {exc.message})"
    if request.form.get("exclude_original") == "1":
        index.set_excluded(dataset.id, [image.id], True)
    start_scan(dataset)
    flash(f"Wrote {new.name}{caption_note}; the original is unchanged"
          + (" and excluded from training" if request.form.get("exclude_original") == "1" else "") + ".", "info")
    return redirect(url_for("datasets.editor", dataset_id=dataset.id, image_id=image.id), 303)
