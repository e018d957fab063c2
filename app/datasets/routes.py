"""Datasets: the list, opening a folder or a zip, the grid, thumbnails and files, sending images in."""
import mimetypes
import os
import shutil
from functools import lru_cache
from datetime import timedelta
from urllib.parse import urlsplit
from pathlib import Path

from flask import abort, current_app, flash, g, make_response, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from PIL import Image
from sqlalchemy import select

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, buckets, index
from app.datasets.bulkedit import BulkEdit, apply, enqueue_bulk_edit, prepare
from app.datasets.captions import CaptionConflict, CaptionWriteError
from app.datasets.freshness import check_for_changes
from app.datasets.captionwrite import write_caption
from app.datasets.grid import (SORTS, TAG_PAGE, GridFilter, count_filtered, grid_page, progress_for, remember,
                               reviewed_count, tag_page)
from app.datasets.history import NORMALISERS, recent_batches
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import DatasetRoot, PathRefused, resolve_within, roots_for_user
from app.datasets.tagexpr import TagExprError
from app.datasets.tags import apply_trigger
from app.datasets.tasks import enqueue_scan
from app.datasets.thumbnails import make_thumbnail, thumb_relpath
from app.extensions import db
from app.files import data_path, header_safe_name, send_data_file
from app.htmx import current_url, message
from app.gallery import Generation
from app.jobs.runner import QueueUnavailable
from app.models import Job, utcnow

GRID_PAGE = 60
FOLDER_CHOICES = 200  # subfolders offered in the "open a folder" list
RECENT_JOB_AGE = timedelta(minutes=10)


# --- helpers shared by the dataset routes -----------------------------------------------------


def user_roots() -> list[DatasetRoot]:
    """The dataset roots of the logged-in account: its own (`{user}`) and the shared ones."""
    return roots_for_user(current_app.config["DATASET_ROOTS"], current_user.username)


def root_of(dataset: Dataset) -> Path:
    """The dataset's folder, checked against its owner's roots (the owner is the current user)."""
    return index.dataset_root(dataset, [root.path for root in user_roots()])


def shared_root(dataset: Dataset) -> bool:
    """Whether the dataset's folder lies in a root every account can open."""
    if dataset.managed:
        return False
    real = Path(os.path.realpath(dataset.root))
    owned = [Path(os.path.realpath(r.path)) for r in user_roots() if not r.shared]
    return not any(real.is_relative_to(root) for root in owned)


def data_dir() -> Path:
    return Path(current_app.config["DATA_DIR"])


@bp.errorhandler(PathRefused)
def path_refused(exc: PathRefused):
    return message(exc.message, 403)


def dataset_jobs(dataset: Dataset) -> list[Job]:
    """This dataset's jobs that run now or failed in the last few minutes, newest first."""
    recent = db.session.scalars(select(Job).where(Job.user_id == current_user.id, Job.kind.like("datasets.%"))
                                .order_by(Job.created_at.desc()).limit(30)).all()
    return [job for job in recent if job.params.get("dataset_id") == dataset.id
            and (not job.ended or (job.status == Job.FAILED and job.finished_at
                                   and utcnow() - job.finished_at < RECENT_JOB_AGE))][:4]


def start_scan(dataset: Dataset, *, full: bool = False) -> Job | None:
    try:
        return enqueue_scan(dataset, full=full)
    except QueueUnavailable as exc:
        flash(str(exc), "error")
        return None


def start_bulk_edit(dataset: Dataset, bulk: BulkEdit, back):
    """Run `bulk` now when it touches few captions, else queue it as a job the dataset's page shows
    (see app.datasets.bulkedit for why); flash what happened and return `back` (the dataset's
    page when a job was queued from elsewhere)."""
    try:
        prepared = prepare(dataset, bulk)
    except (ValueError, TagExprError) as exc:
        flash(str(exc), "error")
        return back
    if prepared.count == 0:
        flash(f"Nothing to change: {prepared.description} matches no caption.", "info")
        return back
    if prepared.count > current_app.config["DATASET_BULK_INLINE_LIMIT"]:
        try:
            enqueue_bulk_edit(dataset, bulk, prepared, user_id=current_user.id)
        except QueueUnavailable as exc:
            flash(str(exc), "error")
            return back
        flash(f"{prepared.description}: running over {prepared.count:,} captions as a job (below); "
              "when it ends it is one step in the history, undone in one click.", "info")
        page = url_for("datasets.show", dataset_id=dataset.id)
        return back if urlsplit(back.location).path == page else redirect(page, 303)
    try:
        outcome = apply(dataset, prepared, root=root_of(dataset), data_dir=data_dir(), user_id=current_user.id)
    except ValueError as exc:  # e.g. a replacement that names a group the pattern does not have
        flash(str(exc), "error")
    else:
        flash(f"{prepared.description}: {outcome.summary}.", "error" if outcome.conflicts or outcome.errors
              or outcome.uncertain else "info")
    return back


@bp.app_template_global()
def datasets_for_send() -> list[Dataset]:
    """The current user's datasets, for the "Send to dataset" form in the gallery (once per request)."""
    if "send_datasets" not in g:
        g.send_datasets = db.session.scalars(select(Dataset).where(Dataset.user_id == current_user.id)
                                             .order_by(Dataset.name)).all()
    return g.send_datasets


@bp.app_template_filter("bucket")
def bucket_label(image: DatasetImage) -> str:
    """The kohya SDXL bucket an image lands in ("1216×832"), or "" for an unreadable image."""
    if not image.width or not image.height:
        return ""
    return _bucket_label(image.width, image.height)


@lru_cache(maxsize=4096)
def _bucket_label(width: int, height: int) -> str:
    # A grid page asks for 60 images, mostly of a few sizes: each size's bucket is worked out once.
    return buckets.bucket_for(width, height).label


@bp.app_template_global()
def grid_refresh_url(dataset_id: int) -> str | None:
    """The grid rows to load when a scan of `dataset_id` ends, if the request came from its grid page."""
    page = urlsplit(current_url())
    if page.path != url_for("datasets.show", dataset_id=dataset_id):
        return None
    return url_for("datasets.grid", dataset_id=dataset_id) + (f"?{page.query}" if page.query else "")


@bp.app_template_filter("tag_query")
def tag_query(tag: str) -> str:
    """A filter expression matching exactly `tag`, whatever characters it holds."""
    return '"' + tag.replace('"', '\\"') + '"'


# --- the list, and opening a dataset ----------------------------------------------------------


def _folder_choices() -> list[str]:
    """Folders under the user's roots (two levels), so the user picks instead of typing a path."""
    choices: list[str] = []
    for root in (r.path for r in user_roots()):
        if not Path(root).is_dir():
            continue
        pending = [(Path(root), 0)]
        while pending and len(choices) < FOLDER_CHOICES:
            folder, depth = pending.pop(0)
            try:
                with os.scandir(folder) as listing:
                    children = [entry for entry in listing if entry.is_dir() and not entry.name.startswith(".")]
            except OSError:
                continue
            for entry in sorted(children, key=lambda e: e.name):
                choices.append(entry.path)
                if depth < 1:
                    pending.append((Path(entry.path), depth + 1))
    return choices[:FOLDER_CHOICES]


def list_page(status: int = 200, **context):
    datasets = db.session.scalars(select(Dataset).where(Dataset.user_id == current_user.id)
                                  .order_by(Dataset.created_at.desc())).all()
    page = render_template("datasets/index.html", datasets=datasets, roots=user_roots(),
                           folders=_folder_choices(), form=request.form, **context)
    return make_response(page, status)


@bp.get("/", endpoint="index")
def list_datasets():
    return list_page()


@bp.post("/")
def open_folder():
    folder = request.form.get("folder", "").strip()
    try:
        path = resolve_within([root.path for root in user_roots()], folder)
    except PathRefused as exc:
        return list_page(422, folder_error=exc.message)
    if not path.is_dir():
        return list_page(422, folder_error=f"Not a folder: {folder}")
    name = request.form.get("name", "").strip() or path.name
    dataset = Dataset(user_id=current_user.id, name=name[:200], root=str(path), managed=False, settings={})
    db.session.add(dataset)
    db.session.commit()
    start_scan(dataset)
    return redirect(url_for("datasets.show", dataset_id=dataset.id), 303)


@bp.post("/<int:dataset_id>/rescan")
def rescan(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    start_scan(dataset, full=True)
    return redirect(url_for("datasets.show", dataset_id=dataset.id), 303)


@bp.post("/<int:dataset_id>/settings")
def settings(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    dataset.name = (request.form.get("name", "").strip() or dataset.name)[:200]
    dataset.trigger = request.form.get("trigger", "").strip()[:200]
    if request.form.get("caption_ext") in (".txt", ".caption", ".cap"):
        dataset.caption_ext = request.form["caption_ext"]
    db.session.commit()
    flash("Settings saved.", "info")
    return redirect(url_for("datasets.show", dataset_id=dataset.id), 303)


@bp.post("/<int:dataset_id>/delete")
def delete(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    name, folder, managed = dataset.name, Path(dataset.root), dataset.managed
    db.session.delete(dataset)
    db.session.commit()
    if managed:
        shutil.rmtree(folder, ignore_errors=True)  # Tessera's own copy of an uploaded zip
        flash(f"Deleted {name} and its uploaded files.", "info")
    else:
        flash(f"Removed {name} from Tessera; its folder and captions were not touched.", "info")
    return redirect(url_for("datasets.index"), 303)


# --- the grid ---------------------------------------------------------------------------------


def current_filter(dataset: Dataset) -> tuple[GridFilter, bool]:
    """The grid filter from the query string, else the one the user left the grid with."""
    keys = ("q", "untagged", "search", "sort")
    if any(key in request.args for key in keys):
        return GridFilter.from_args(request.args), False
    progress = progress_for(current_user.id, dataset.id)
    if progress and progress.filters:
        return GridFilter.from_args(progress.filters), True
    return GridFilter(), False


def forget_filter(dataset: Dataset) -> None:
    """Drop a remembered filter that cannot be used, so no page keeps failing on it."""
    remember(current_user.id, dataset.id, grid_filter=GridFilter())


@bp.get("/<int:dataset_id>")
def show(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    check_for_changes(dataset)  # first: its commit would expire the rows loaded below
    grid_filter, resumed = current_filter(dataset)
    filter_error, status = grid_filter.problem, 200
    if filter_error and resumed:
        # A remembered filter that fails (saved by an older version, say) is dropped, never fatal.
        forget_filter(dataset)
        filter_error = f"Your last filter could not be used and was cleared ({filter_error})."
        grid_filter, resumed = GridFilter(), False
    elif filter_error:
        status = 400  # a filter in the query string (a link can carry anything): said, never remembered
    if filter_error and status == 400:
        images, has_more, matching = [], False, 0
    else:
        # Saved first: its commit would expire the rows loaded below and reload each one in the template.
        remember(current_user.id, dataset.id, grid_filter=grid_filter)
        images, has_more = grid_page(dataset.id, grid_filter, 0, GRID_PAGE)
        matching = count_filtered(dataset.id, grid_filter)
    progress = progress_for(current_user.id, dataset.id)
    last_image = db.session.get(DatasetImage, progress.last_image_id) if progress and progress.last_image_id else None
    history = recent_batches(dataset.id, limit=1)
    tags, tag_total = tag_page(dataset.id)
    page = render_template(
        "datasets/show.html", dataset=dataset, images=images, has_more=has_more, next_offset=GRID_PAGE,
        grid_filter=grid_filter, filter_args=grid_filter.to_args(), resumed=resumed, filter_error=filter_error,
        matching=matching, tags=tags, tag_page=tags, tag_total=tag_total, tag_offset=0, tag_find="",
        tag_next_offset=TAG_PAGE if tag_total > TAG_PAGE else None, jobs=dataset_jobs(dataset),
        reviewed=reviewed_count(dataset.id), last_image=last_image, shared=shared_root(dataset),
        last_change=history[0] if history and history[0].undone_at is None else None, sorts=SORTS,
        normalisers=NORMALISERS,
    )
    return make_response(page, status)


@bp.get("/<int:dataset_id>/tags")
def tag_panel(dataset_id):
    """A page of the tag panel (HTMX): the next rows, or the first rows of a search."""
    dataset = owned_or_404(Dataset, dataset_id)
    offset = max(request.args.get("offset", 0, type=int), 0)
    find = request.args.get("find", "").strip()
    tags, total = tag_page(dataset.id, offset=offset, find=find)
    next_offset = offset + TAG_PAGE if total > offset + TAG_PAGE else None
    return render_template("datasets/_tag_list.html", dataset=dataset, tag_page=tags, tag_total=total,
                           tag_offset=offset, tag_find=find, tag_next_offset=next_offset)


@bp.get("/<int:dataset_id>/grid")
def grid(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    grid_filter = GridFilter.from_args(request.args)
    offset = max(request.args.get("offset", 0, type=int), 0)
    if grid_filter.problem:
        return message(grid_filter.problem, 400)
    images, has_more = grid_page(dataset.id, grid_filter, offset, GRID_PAGE)
    return render_template("datasets/_grid_rows.html", dataset=dataset, images=images, has_more=has_more,
                           next_offset=offset + GRID_PAGE, filter_args=grid_filter.to_args())


@bp.get("/<int:dataset_id>/images/<int:image_id>/cell")
def cell(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    return render_template("datasets/_cell.html", dataset=dataset, image=image)


@bp.get("/<int:dataset_id>/thumbs/<int:image_id>-<digest>.webp")
def thumb(dataset_id, image_id, digest):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    if not image.content_hash or digest != image.content_hash[:16]:
        abort(404)  # an old URL of a changed image; the grid links the new one
    relpath = thumb_relpath(image.content_hash)
    if not data_path(relpath).is_file():
        # The cache was cleared: make this one now rather than show a broken image.
        try:
            make_thumbnail(index.resolve_image(root_of(dataset), image.relpath), data_path(relpath))
        except (OSError, SyntaxError, Image.DecompressionBombError):
            abort(404)
    return send_data_file(relpath, mimetype="image/webp", immutable=True)


@bp.get("/<int:dataset_id>/images/<int:image_id>/file")
def image_file(dataset_id, image_id):
    dataset = owned_or_404(Dataset, dataset_id)
    image = child_or_404(DatasetImage, image_id, dataset_id=dataset.id)
    path = index.resolve_image(root_of(dataset), image.relpath)
    if not path.is_file():
        abort(404)
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    data_dir = Path(current_app.config["DATA_DIR"]).resolve()
    if path.is_relative_to(data_dir):
        # Behind nginx this becomes an X-Accel-Redirect; roots outside the data folder stay app-served.
        return send_data_file(path.relative_to(data_dir), mimetype=mimetype)
    return send_file(path, mimetype=mimetype, conditional=True, max_age=0, download_name=header_safe_name(path.name))


@bp.app_template_global()
def dataset_thumb_url(image: DatasetImage) -> str:
    return url_for("datasets.thumb", dataset_id=image.dataset_id, image_id=image.id, digest=image.content_hash[:16])


# --- gallery and canvas images into a dataset -------------------------------------------------


@bp.post("/send")
def send_generation():
    """Copy a generated image into a dataset, with its prompt as the caption, then index it."""
    generation = owned_or_404(Generation, request.form.get("generation_id", type=int))
    dataset = owned_or_404(Dataset, request.form.get("dataset_id", type=int) or 0)
    root = root_of(dataset)
    source = data_dir() / generation.path
    if not source.is_file():
        return message("The generated image file is missing.", 404)
    if not root.is_dir():
        return message(f"The folder of {dataset.name} is missing.", 404)
    stem, n = f"tessera-{generation.id}", 1
    while (target := resolve_within([root], f"{stem}.png")).exists() or target.with_suffix(dataset.caption_ext).exists():
        n += 1
        stem = f"tessera-{generation.id}-{n}"
    shutil.copyfile(source, target)
    caption = " ".join(generation.prompt.split())
    if dataset.trigger:
        caption = apply_trigger(caption, dataset.trigger)
    try:
        write_caption(target.with_suffix(dataset.caption_ext), caption, expected_version=None)
    except (CaptionWriteError, CaptionConflict) as exc:
        target.unlink(missing_ok=True)
        return message(str(exc), 403)
    job = start_scan(dataset)
    text = f"Sent to {dataset.name} as {target.name}" + ("" if job else " (it appears after the next rescan)")
    return message(text, 200, kind="ok")
