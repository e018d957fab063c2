"""Crops to a training bucket: the crop tool (drag, centre or automatic box) and the bulk job."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from flask import flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from PIL import Image
from werkzeug.datastructures import MultiDict

from app import imaging
from app.auth.access import child_or_404, owned_or_404
from app.datasets import autocrop, bp, buckets, index
from app.datasets.captions import CaptionWriteError
from app.datasets.filetasks import copy_caption, run_crop_buckets
from app.datasets.models import Dataset, DatasetImage
from app.datasets.routes import root_of, start_scan
from app.datasets.selection import scope_images
from app.htmx import message
from app.jobs.runner import QueueUnavailable, enqueue_job

BUCKET_SIDE = (64, 8192)
# Analysed within a request up to this size (about a second and ~100 MB decoded); JPEGs of any size,
# since they decode at 1/8 scale. Larger PNG/WebP/TIFF are placed by the bulk job instead.
REQUEST_PIXELS = 24_000_000


def _trainer() -> str:
    key = request.values.get("trainer", buckets.DEFAULT_TRAINER)
    return key if key in buckets.TRAINERS else buckets.DEFAULT_TRAINER


def _bucket_sizes(trainer_key: str) -> list[tuple[int, int]]:
    """The trainer's buckets, narrowest aspect first."""
    t = buckets.TRAINERS[trainer_key]
    sizes = (buckets.kohya_resolutions(t.resolution, t.min_size, t.max_size, t.steps) if t.rule == "kohya"
             else buckets.ai_toolkit_resolutions(t.resolution, t.steps))
    return sorted(set(sizes), key=lambda s: s[0] / s[1])


def _bucket_arg(value: str | None) -> tuple[int, int] | None:
    try:
        width, height = (int(v) for v in (value or "").split("x"))
    except ValueError:
        return None
    low, high = BUCKET_SIDE
    return (width, height) if low <= width <= high and low <= height <= high else None


class TooLargeToWaitFor(ValueError):
    """The image would take too long (and too much memory) to analyse within a request."""


def _proposal(dataset: Dataset, image: DatasetImage, bucket: tuple[int, int]) -> autocrop.AutoCrop:
    """The automatic box; raises OSError / ValueError / DecompressionBombError for an unreadable image,
    TooLargeToWaitFor for a huge image that cannot be decoded at reduced scale (only JPEG can)."""
    if (image.format or "").upper() != "JPEG" and (image.width or 0) * (image.height or 0) > REQUEST_PIXELS:
        raise TooLargeToWaitFor(f"at {image.width * image.height / 1e6:.0f} MP it is too large to analyse while you"
                                " wait; the bulk “Crop to buckets” places it automatically")
    return autocrop.auto_crop(autocrop.analysis_for(index.resolve_image(root_of(dataset), image.relpath)), bucket)


def _proposal_json(proposal: autocrop.AutoCrop) -> dict:
    return {"box": list(proposal.box), "method": proposal.method, "faces": [list(f) for f in proposal.faces],
            "face_cut": proposal.face_cut, "note": proposal.note}


@bp.get("/<int:dataset_id>/images/<int:image_id>/crop")
def crop_page(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    trainer = _trainer()
    bucket = buckets.bucket_for(image.width, image.height, trainer) if image.width and image.height else None
    proposal, problem = None, None
    if bucket is not None:
        try:
            proposal = _proposal(dataset, image, (bucket.width, bucket.height))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            problem = f"No automatic box: {imaging.open_problem(exc)}. The box is centred; drag it to adjust."
    return render_template("datasets/crop.html", dataset=dataset, image=image, trainer=trainer, bucket=bucket,
                           sizes=_bucket_sizes(trainer), trainers=buckets.TRAINERS, proposal=proposal, problem=problem)


@bp.get("/<int:dataset_id>/images/<int:image_id>/crop/auto")
def crop_auto(dataset_id, image_id):
    """The automatic box for `?bucket=WxH` as JSON: ``{"box": [l, t, r, b], "method", "faces", "face_cut",
    "note"}`` in the image's upright pixels; ``{"error"}`` with 422 for a bad bucket or unreadable image."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    bucket = _bucket_arg(request.args.get("bucket"))
    if bucket is None:
        return jsonify(error="Choose a bucket size (width×height, 64–8192 px)."), 422
    try:
        return jsonify(_proposal_json(_proposal(dataset, image, bucket)))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return jsonify(error=f"No automatic box: {imaging.open_problem(exc)}."), 422


@bp.post("/<int:dataset_id>/images/<int:image_id>/crop")
def crop(dataset_id, image_id):
    """Write the chosen part of the image as a new file beside it (never over it), then rescan."""
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    back = redirect(url_for("datasets.crop_page", dataset_id=dataset.id, image_id=image.id), 303)
    size = _bucket_arg(request.form.get("bucket"))
    if size is None:
        flash("Choose a bucket size.", "error")
        return back
    if not image.width or not image.height:
        flash("This image cannot be read.", "error")
        return back
    box = [request.form.get(name, type=int) for name in ("left", "top", "right", "bottom")]
    resize = size if request.form.get("resize") == "1" else None
    try:
        if None in box:  # no script ran: the automatic box (centred for an image too large to analyse here)
            try:
                box = list(_proposal(dataset, image, size).box)
            except TooLargeToWaitFor:
                box = list(buckets.focus_crop(image.width, image.height, size))
        new = buckets.crop_to_new_file(index.resolve_image(root_of(dataset), image.relpath), tuple(box), size=resize)
    except (ValueError, OSError, Image.DecompressionBombError) as exc:
        flash(f"Could not crop: {imaging.open_problem(exc)}", "error")
        return back
    # The crop starts with the original's caption, written beside it as the dataset writes captions.
    try:
        kept = copy_caption(dataset, root_of(dataset), image, new)
        caption_note = f" ({kept})" if kept else ""
    except CaptionWriteError as exc:
        caption_note = f" (its caption could not be written: {exc.message})"
    excluded = request.form.get("exclude_original") == "1"
    if excluded:
        index.set_excluded(dataset.id, [image.id], True)
    start_scan(dataset)
    flash(f"Wrote {new.name}{caption_note}; the original is unchanged"
          + (" and excluded from training" if excluded else "") + ".", "info")
    return redirect(url_for("datasets.editor", dataset_id=dataset.id, image_id=image.id), 303)


# --- bulk: crop the chosen images to their buckets -----------------------------------------------


def _scope(dataset: Dataset, values):
    ids = [int(i) for i in values.getlist("ids") if i.isdigit()]
    return scope_images(dataset, values.get("scope", "all"), values, ids)


def clean_folder(value: str) -> str | None:
    """A sub-folder name for the crops ("" → None: beside the originals). Raises ValueError for a
    name that would leave the dataset, be hidden from scans, or is not a plain relative path."""
    value = value.strip().replace("\\", "/")
    if not value:
        return None
    if value.startswith("/") or re.match(r"[A-Za-z]:", value):
        raise ValueError("Name a sub-folder inside the dataset (e.g. “cropped”), not an absolute path.")
    value = value.rstrip("/")
    parts = PurePosixPath(value).parts
    if not parts or any(p in ("", ".", "..") or p.startswith(".") for p in parts) or "\x00" in value:
        raise ValueError("Name the sub-folder plainly (e.g. “cropped”): no “..”, no leading dot, no absolute path.")
    if len(value) > 200:
        raise ValueError("That sub-folder name is too long.")
    return "/".join(parts)


@bp.get("/<int:dataset_id>/crop-buckets")
def crop_buckets(dataset_id):
    """The bulk crop form for all images, or for a scope given in the link (filtered or selected)."""
    return _crop_buckets_form(owned_or_404(Dataset, dataset_id), request.args)


@bp.post("/<int:dataset_id>/crop-buckets/choose")
def crop_buckets_chosen(dataset_id):
    """The bulk crop form for the images chosen in the grid's bulk form. A POST, not a GET: the bulk
    form's CSRF token and a long selection stay out of URLs (logs, history, the 4 KB request line)."""
    return _crop_buckets_form(owned_or_404(Dataset, dataset_id), request.form)


def _histogram(images, trainer: str) -> list[tuple[str, int]]:
    return buckets.histogram(((i.width, i.height) for i in images if i.width and i.height), trainer)


def _crop_buckets_form(dataset, args):
    scope = args.get("scope", "all")
    try:
        images, scope_text = _scope(dataset, args)
    except ValueError as exc:  # a filter that cannot be used: say so, offer all images
        flash(str(exc), "error")
        scope, images, scope_text = "all", *_scope(dataset, MultiDict())
    trainer = _trainer()
    return render_template("datasets/crop_buckets.html", dataset=dataset, images=images, scope_text=scope_text,
                           scope=scope, scope_args=args, trainer=trainer, trainers=buckets.TRAINERS,
                           counts=_histogram(images, trainer))


@bp.post("/<int:dataset_id>/crop-buckets/histogram")
def crop_buckets_histogram(dataset_id):
    """The bucket histogram of the form's images for the trainer chosen (HTMX, on a change of
    trainer). A POST: it carries the form as it is, a long selection included."""
    dataset = owned_or_404(Dataset, dataset_id)
    try:
        images, _ = _scope(dataset, request.form)
    except ValueError as exc:
        return message(str(exc), 422)
    trainer = _trainer()
    return render_template("datasets/_bucket_histogram.html", trainer=trainer, trainers=buckets.TRAINERS,
                           counts=_histogram(images, trainer))


@bp.post("/<int:dataset_id>/crop-buckets")
def start_crop_buckets(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    form = request.form
    try:
        folder = clean_folder(form.get("folder", "") if form.get("where") == "folder" else "")
        images, scope_text = _scope(dataset, form)
    except ValueError as exc:
        return message(str(exc), 422)
    if form.get("where") == "folder" and folder is None:
        return message("Name the sub-folder for the crops, or write them beside the originals.", 422)
    if not images:
        return message(f"Nothing to crop: {scope_text} holds no image.", 422)
    params = {"dataset_id": dataset.id, "image_ids": [i.id for i in images], "trainer": _trainer(), "folder": folder,
              "upscale": form.get("upscale") == "1", "exclude_originals": form.get("exclude_originals") == "1"}
    try:
        job = enqueue_job(run_crop_buckets, user_id=current_user.id, kind="datasets.crop",
                          title=f"Crop {scope_text} of {dataset.name} to buckets", params=params)
    except QueueUnavailable as exc:
        return message(str(exc), 503)
    return render_template("jobs/_status.html", job=job)
