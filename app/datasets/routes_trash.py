"""The dataset's trash: what is in it (paged), restoring an entry, and emptying it for good."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from jinja2.filters import do_filesizeformat as format_size
from PIL import Image

from app.auth.access import owned_or_404
from app.datasets import bp
from app.datasets.filetasks import run_empty_trash
from app.datasets.models import Dataset
from app.datasets.paths import PathRefused
from app.datasets.routes import dataset_jobs, root_of, start_scan
from app.datasets.thumbnails import make_thumbnail, thumb_relpath
from app.datasets.trash import empty_trash, read_entry, restore, trash_page, trash_summary, trashed_image
from app.files import data_path, send_data_file
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.redirects import safe_redirect_target

EMPTY_INLINE = 200  # entries deleted within the request; more are emptied by a job


def _trash_url(dataset: Dataset, **args) -> str:
    return url_for("datasets.trash", dataset_id=dataset.id, **args)


@bp.get("/<int:dataset_id>/trash")
def trash(dataset_id):
    """The trash, newest first, a page at a time; `?confirm=1` asks before emptying it."""
    dataset = owned_or_404(Dataset, dataset_id)
    root = root_of(dataset)
    page = trash_page(root, request.args.get("page", 1, type=int))
    summary = trash_summary(root)
    jobs = [job for job in dataset_jobs(dataset) if job.kind == "datasets.empty_trash"]
    return render_template("datasets/trash.html", dataset=dataset, page=page, summary=summary, jobs=jobs,
                           confirm=request.args.get("confirm") == "1" and summary.count > 0)


@bp.get("/<int:dataset_id>/trash/<entry>/thumb.webp")
def trash_thumb(dataset_id, entry):
    """The trashed image's grid thumbnail (kept by content hash), made again from the trashed file if
    the cache lost it; 404 for an entry trashed without a hash or an unreadable image."""
    dataset = owned_or_404(Dataset, dataset_id)
    root = root_of(dataset)
    try:
        found = read_entry(root, entry)
    except KeyError:
        abort(404)
    if not found.content_hash:
        abort(404)
    relpath = thumb_relpath(found.content_hash)
    if not data_path(relpath).is_file():
        try:
            make_thumbnail(trashed_image(root, found), data_path(relpath))
        except (OSError, SyntaxError, PathRefused, Image.DecompressionBombError):
            abort(404)
    return send_data_file(relpath, mimetype="image/webp", immutable=True)


@bp.post("/<int:dataset_id>/trash/restore")
def trash_restore(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    back = safe_redirect_target(request.form.get("next"), _trash_url(dataset))
    try:
        entry = restore(root_of(dataset), request.form.get("entry", ""))
    except KeyError:
        flash("That trash entry is gone (restored or emptied meanwhile).", "error")
        return redirect(back, 303)
    except (OSError, PathRefused) as exc:
        flash(f"Could not restore: {getattr(exc, 'message', None) or exc}", "error")
        return redirect(back, 303)
    job = start_scan(dataset)
    flash(f"Restored {entry.image}" + ("; it reappears when the rescan ends." if job else "; rescan to see it."), "info")
    return redirect(back, 303)


@bp.post("/<int:dataset_id>/trash/empty")
def trash_empty(dataset_id):
    """Delete for good the entries the user saw (up to `through`, the newest one then listed)."""
    dataset = owned_or_404(Dataset, dataset_id)
    root = root_of(dataset)
    through = request.form.get("through", "")
    summary = trash_summary(root, through)
    if summary.count == 0:
        flash("Nothing to empty: the trash has no entries from before you looked.", "info")
        return redirect(_trash_url(dataset), 303)
    if summary.count <= EMPTY_INLINE:
        deleted, freed, failed = empty_trash(root, through)
        flash(f"Deleted {deleted:,} item{'s' if deleted != 1 else ''} for good ({format_size(freed)})"
              + (f"; {len(failed)} could not be deleted: " + "; ".join(f"{name}: {why}" for name, why in failed[:5])
                 if failed else "") + ".", "error" if failed else "info")
        return redirect(_trash_url(dataset), 303)
    try:
        enqueue_job(run_empty_trash, user_id=current_user.id, kind="datasets.empty_trash",
                    title=f"Empty the trash of {dataset.name}", params={"dataset_id": dataset.id, "through": through})
    except QueueUnavailable as exc:
        flash(str(exc), "error")
        return redirect(_trash_url(dataset), 303)
    flash(f"Emptying {summary.count:,} items ({format_size(summary.size)}) in the background.", "info")
    return redirect(_trash_url(dataset), 303)
