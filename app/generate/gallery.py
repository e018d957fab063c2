"""The gallery pages (views of the generate area): the grid with search and model filter, one image's
detail view with what a user does with it (use its settings, use it as an input, open it on a canvas,
send it to a dataset, download, delete), and the image and thumbnail files."""
from __future__ import annotations

from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.access import owned_or_404
from app.extensions import db
from app.files import send_data_file
from app.gallery import Generation
from app.gallery.browse import (GalleryFilter, cache_key, delete_generation, describe_inputs, ensure_thumbnail,
                                models_used, neighbours, page_of)
from app.generate import bp
from app.models import Job, utcnow
from app.replicate.catalog import available_models

GALLERY_PAGE_SIZE = 56  # eight rows of the 1280 px grid's seven columns


def _data_dir() -> Path:
    return Path(current_app.config["DATA_DIR"])


def _gallery_image(generation_id: int) -> Generation:
    """The current user's image that is in the gallery (a canvas variation not kept is not)."""
    generation = owned_or_404(Generation, generation_id)
    if not generation.in_gallery:
        abort(404)
    return generation


def _model_labels() -> dict[str, str]:
    return {choice.ref: choice.label for choice in available_models(current_user.id)}


@bp.get("/gallery")
def gallery():
    gallery_filter = GalleryFilter.from_args(request.args)
    page = max(request.args.get("page", 1, type=int), 1)
    items, total, has_next = page_of(current_user.id, gallery_filter, page, GALLERY_PAGE_SIZE)
    labels = _model_labels()
    model_choices = [(ref, labels.get(ref, ref)) for ref in models_used(current_user.id)]
    return render_template("generate/gallery.html", items=items, page=page, has_next=has_next, total=total,
                           q=gallery_filter.q, model=gallery_filter.model, model_choices=model_choices,
                           detail_args=gallery_filter.as_args())


@bp.get("/gallery/<int:generation_id>")
def gallery_detail(generation_id):
    item = _gallery_image(generation_id)
    gallery_filter = GalleryFilter.from_args(request.args)
    newer_id, older_id = neighbours(current_user.id, item, gallery_filter)
    negative_prompt, inputs, loras = describe_inputs(item.params or {})
    job = db.session.get(Job, item.job_id) if item.job_id else None
    return render_template(
        "generate/gallery_detail.html", item=item, newer_id=newer_id, older_id=older_id,
        detail_args=gallery_filter.as_args(), negative_prompt=negative_prompt, inputs=inputs, loras=loras,
        model_label=_model_labels().get(item.model_ref, item.model_ref), job=job, now=utcnow(),
        input_targets=_input_targets(item))


def _input_targets(item: Generation) -> list[dict]:
    """Links that open Generate with this image in an image input ("use as input": Generate's ``?use=``,
    which picks an image-editing model unless one is named)."""
    return [{"label": "Use as input", "url": url_for("generate.index", use=f"generation:{item.id}")}]


@bp.post("/gallery/<int:generation_id>/delete")
def delete_image(generation_id):
    """Delete the image with its files, then show the next older one of the same search (or newer)."""
    item = _gallery_image(generation_id)
    gallery_filter = GalleryFilter.from_args(request.form)
    newer_id, older_id = neighbours(current_user.id, item, gallery_filter)
    delete_generation(item, _data_dir())
    flash(f"Deleted image {generation_id} and its file.", "info")
    following = older_id or newer_id
    if following is None:
        return redirect(url_for("generate.gallery", **gallery_filter.as_args()), 303)
    return redirect(url_for("generate.gallery_detail", generation_id=following, **gallery_filter.as_args()), 303)


@bp.get("/generations/<int:generation_id>.png")
def image(generation_id):
    generation = owned_or_404(Generation, generation_id)
    download = f"tessera-{generation.id}-seed{generation.seed}.png" if request.args.get("download") else None
    return send_data_file(generation.path, mimetype="image/png", download_name=download, immutable=True)


@bp.get("/generations/<int:generation_id>/thumb.webp")
def thumb(generation_id):
    """The grid's thumbnail, made on first request and kept under DATA_DIR/thumbs."""
    generation = owned_or_404(Generation, generation_id)
    relpath = ensure_thumbnail(generation, _data_dir())
    if relpath is None:
        abort(404)
    return send_data_file(relpath, mimetype="image/webp", immutable=True)


@bp.app_template_global()
def generation_url(generation: Generation, download: bool = False) -> str:
    """The image's URL; ``v`` names its file, so a reused id never shows a deleted image from a cache."""
    return url_for("generate.image", generation_id=generation.id, v=cache_key(generation),
                   download=1 if download else None)


@bp.app_template_global()
def thumb_url(generation: Generation) -> str:
    return url_for("generate.thumb", generation_id=generation.id, v=cache_key(generation))


@bp.app_template_global()
def generations_by_id(ids: list[int]) -> list[Generation]:
    """The images with these ids that still exist, in the order given."""
    if not ids:
        return []
    rows = db.session.scalars(db.select(Generation).where(Generation.id.in_(ids))).all()
    return sorted(rows, key=lambda g: ids.index(g.id))
