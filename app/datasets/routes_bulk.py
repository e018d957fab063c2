"""Dataset-wide work: tag actions with undo, health, auto-captions and exports."""
import re

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.access import child_or_404, owned_or_404
from app.datasets import bp, buckets, index
from app.datasets.captions import CAPTION_PROBLEMS
from app.datasets.grid import filtered_select, GridFilter
from app.datasets.health import health_report, known_problems
from app.datasets.bulkedit import FIXES, BulkEdit, enqueue_undo
from app.datasets.history import changes_by_others, recent_batches, undo_batch
from app.datasets.suggestions import (accept_suggestions, clear_all_suggestions, clear_suggestions, pending_count,
                                     pending_suggestions, uncaptioned_ids)
from app.datasets.models import CaptionBatch, Dataset
from app.datasets.routes import data_dir, dataset_jobs, root_of, shared_root, start_bulk_edit
from app.datasets.routes_health import trash_entries
from app.extensions import db
from app.files import send_data_file
from app.replicate.catalog import available_models
from app.datasets.tasks import EXPORT_FORMATS, run_autocaption, run_export
from app.htmx import is_htmx, message
from app.jobs.queues import INTERACTIVE_IMAGES
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.models import Job
from app.redirects import safe_redirect_target

DEFAULT_CAPTIONER = "salesforce/blip"
SUGGESTION_PAGE = 200  # suggestions listed at once; accepting or discarding brings on the next


def _scope_ids(dataset, values=None) -> tuple[list[int] | None, str]:
    """The images a bulk action or an export applies to (None: all) and how to describe them.

    `values`: where the choice is (the form by default; the query string for the export page).
    Raises ValueError (TagExprError among them) for a filter that cannot be used.
    """
    values = request.form if values is None else values
    scope = values.get("scope", "all")
    if scope == "selected":
        ids = index.existing_ids(dataset.id, [int(i) for i in values.getlist("ids") if i.isdigit()])
        return ids, f"{len(ids)} selected image{'s' if len(ids) != 1 else ''}"
    if scope == "filtered":
        grid_filter = GridFilter.from_args(values)
        if grid_filter.problem:
            raise ValueError(grid_filter.problem)
        ids = db.session.scalars(filtered_select(dataset.id, grid_filter)).all()
        return ids, f"{len(ids)} filtered image{'s' if len(ids) != 1 else ''}"
    return None, "all images"


@bp.post("/<int:dataset_id>/bulk")
def bulk(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    grid_filter = GridFilter.from_args(request.form)
    # Back to the grid as it was, unless its filter is the problem: then to the plain grid.
    back_args = grid_filter.to_args() if not grid_filter.problem else {}
    back = redirect(url_for("datasets.show", dataset_id=dataset.id, **back_args), 303)
    return start_bulk_edit(dataset, BulkEdit.from_form(request.form, trigger=dataset.trigger), back)


@bp.get("/<int:dataset_id>/history")
def history(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    # In a shared folder other accounts' datasets write the same captions: list who changed what.
    others = changes_by_others(dataset) if shared_root(dataset) else []
    return render_template("datasets/history.html", dataset=dataset, batches=recent_batches(dataset.id, limit=100),
                           others=others)


@bp.post("/<int:dataset_id>/history/<batch_id>/undo")
def undo(dataset_id, batch_id):
    dataset = owned_or_404(Dataset, dataset_id)
    batch = child_or_404(CaptionBatch, batch_id, dataset_id=dataset.id)
    back = redirect(safe_redirect_target(request.form.get("next"), url_for("datasets.show", dataset_id=dataset.id)), 303)
    if any(job.kind in ("datasets.bulk", "datasets.undo") and not job.ended for job in dataset_jobs(dataset)):
        # The step may still be growing (a bulk edit writes it chunk by chunk): undo it once it is whole.
        flash("A caption edit of this dataset is still running; undo once it has ended.", "error")
        return back
    if batch.image_count > current_app.config["DATASET_BULK_INLINE_LIMIT"]:
        try:
            enqueue_undo(dataset, batch, user_id=current_user.id)
        except QueueUnavailable as exc:
            flash(str(exc), "error")
            return back
        flash(f"Undoing “{batch.description}” over {batch.image_count:,} captions as a job (below).", "info")
        return redirect(url_for("datasets.show", dataset_id=dataset.id), 303)
    outcome = undo_batch(dataset, batch, root=root_of(dataset), data_dir=data_dir(), user_id=current_user.id)
    flash(f"Undid “{batch.description}”: {outcome.summary}.", "error" if outcome.conflicts or outcome.errors else "info")
    return back


@bp.get("/<int:dataset_id>/health")
def health(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    min_side = max(request.args.get("min_side", 512, type=int), 1)
    max_aspect = max(request.args.get("max_aspect", 3.0, type=float), 1.0)
    trainer = request.args.get("trainer", buckets.DEFAULT_TRAINER)
    trainer = trainer if trainer in buckets.TRAINERS else buckets.DEFAULT_TRAINER
    report = health_report(dataset.id, min_side=min_side, max_aspect=max_aspect, trainer=trainer)
    return render_template("datasets/health.html", dataset=dataset, report=report, min_side=min_side,
                           max_aspect=max_aspect, trainer=trainer, trainers=buckets.TRAINERS, fixes=FIXES,
                           problems=CAPTION_PROBLEMS, trash=trash_entries(dataset))


# --- auto-caption -----------------------------------------------------------------------------


def _captioners():
    return available_models(current_user.id, "caption")


def _default_captioner() -> str:
    return next((m.ref for m in _captioners() if m.ref.startswith(DEFAULT_CAPTIONER)), "")


@bp.get("/<int:dataset_id>/autocaption")
def autocaption(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    return render_template("datasets/autocaption.html", dataset=dataset, models=_captioners(),
                           default_model=_default_captioner(), uncaptioned=len(uncaptioned_ids(dataset.id)),
                           suggestions=pending_suggestions(dataset.id, limit=SUGGESTION_PAGE),
                           suggestion_total=pending_count(dataset.id),
                           jobs=[job for job in dataset_jobs(dataset) if job.kind == "datasets.caption"],
                           token_missing=not current_app.config["REPLICATE_API_TOKEN"])


@bp.post("/<int:dataset_id>/autocaption")
def start_autocaption(dataset_id):
    """Caption the uncaptioned images (the auto-caption page, HTMX) or the selected ones (the grid's
    bulk form, a plain post that comes back to the auto-caption page)."""
    dataset = owned_or_404(Dataset, dataset_id)
    from_grid = not is_htmx()
    model = request.form.get("model") or _default_captioner()
    if request.form.get("target") == "selected":
        ids = index.existing_ids(dataset.id, [int(i) for i in request.form.getlist("ids") if i.isdigit()])
    else:
        ids = uncaptioned_ids(dataset.id)
    problem = None
    if model not in {m.ref for m in _captioners()}:
        problem = "Choose a captioning model."
    elif not current_app.config["REPLICATE_API_TOKEN"]:
        problem = "Set REPLICATE_API_TOKEN to caption through Replicate."
    elif not ids:
        problem = "No images to caption: every image has a caption (or none is selected)."
    job = None
    if problem is None:
        prefix = request.form.get("prefix", dataset.trigger if from_grid else "")
        try:
            job = enqueue_job(run_autocaption, user_id=current_user.id, kind="datasets.caption",
                              title=f"Auto-caption {len(ids)} image{'s' if len(ids) != 1 else ''} in {dataset.name}",
                              params={"dataset_id": dataset.id, "image_ids": ids, "model": model, "prefix": prefix,
                                      "suffix": request.form.get("suffix", "")},
                              interactive=len(ids) <= INTERACTIVE_IMAGES)
        except QueueUnavailable as exc:
            problem = str(exc)
    if from_grid:
        flash(problem or f"Captioning {len(ids)} image{'s' if len(ids) != 1 else ''}; the suggestions appear below.",
              "error" if problem else "info")
        return redirect(url_for("datasets.autocaption", dataset_id=dataset.id), 303)
    if problem:
        return message(problem, 422)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<int:dataset_id>/suggestions")
def suggestions(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()] or None
    if request.form.get("action") == "discard":
        clear_suggestions(ids) if ids else clear_all_suggestions(dataset.id)
        flash("Suggestions discarded.", "info")
    else:
        outcome = accept_suggestions(dataset, ids, root=root_of(dataset), data_dir=data_dir(), user_id=current_user.id)
        flash(f"Suggestions accepted: {outcome.summary}.", "error" if outcome.conflicts or outcome.errors else "info")
    return redirect(url_for("datasets.autocaption", dataset_id=dataset.id), 303)


# --- export -----------------------------------------------------------------------------------


@bp.get("/<int:dataset_id>/export")
def export(dataset_id):
    """The export form for all images, or for a scope given in the link (selected ids or the filter)."""
    return _export_form(owned_or_404(Dataset, dataset_id), request.args)


@bp.post("/<int:dataset_id>/export/choose")
def export_chosen(dataset_id):
    """The export form for the images chosen in the grid's bulk form. A POST, not a GET: the bulk
    form's CSRF token and a long selection stay out of URLs (logs, history, the 4 KB request line)."""
    return _export_form(owned_or_404(Dataset, dataset_id), request.form)


def _export_form(dataset, args):
    try:
        ids, scope_text = _scope_ids(dataset, args)
    except ValueError as exc:  # a malformed filter, or one the filter limits refuse
        flash(str(exc), "error")
        ids, scope_text = None, "all images"
    scope = args.get("scope", "all") if ids is not None else "all"
    return render_template("datasets/export.html", dataset=dataset, formats=EXPORT_FORMATS, scope=scope,
                           scope_text=scope_text, scope_ids=ids or [], scope_args=args,
                           problems=known_problems(dataset.id, ids))


@bp.post("/<int:dataset_id>/export")
def start_export(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    form = request.form
    fmt = form.get("format", "training")
    if fmt not in EXPORT_FORMATS:
        return message("Unknown export format.", 422)
    trigger = form.get("trigger", dataset.trigger).strip()
    if fmt == "kohya" and not trigger:
        return message("The kohya folder layout needs a trigger word (img/10_trigger class/).", 422)
    params = {"dataset_id": dataset.id, "format": fmt, "trigger": trigger, "max_side": form.get("max_side", type=int),
              "sequential": form.get("sequential") == "1", "strip_escapes": form.get("strip_escapes") == "1",
              "png_jpeg_only": form.get("png_jpeg_only") == "1", "repeats": form.get("repeats", 10, type=int),
              "class_token": form.get("class_token", "").strip()}
    if params["max_side"] is not None and params["max_side"] < 64:
        return message("The maximum side must be at least 64 pixels.", 422)
    if fmt == "kohya" and params["repeats"] < 1:
        return message("Repeats must be at least 1.", 422)
    background = form.get("background", "") if form.get("flatten") == "1" else ""
    if background and not re.fullmatch(r"#[0-9a-fA-F]{6}", background):
        return message("Choose the background colour as #rrggbb.", 422)
    params["background"] = background or None
    try:
        ids, scope_text = _scope_ids(dataset)
    except ValueError as exc:  # a malformed filter, or one the filter limits refuse
        return message(str(exc), 422)
    if ids == []:
        return message(f"Nothing to export: {scope_text}.", 422)
    params["image_ids"] = ids
    try:
        job = enqueue_job(run_export, user_id=current_user.id, kind="datasets.export",
                          title=f"Export {dataset.name}" + (f" ({scope_text})" if ids is not None else ""), params=params)
    except QueueUnavailable as exc:
        return message(str(exc), 503)
    return render_template("jobs/_status.html", job=job)


@bp.get("/exports/<job_id>")
def download_export(job_id):
    job = owned_or_404(Job, job_id)
    if job.kind != "datasets.export" or job.status != job.SUCCEEDED or "download" not in job.result:
        abort(404)
    return send_data_file(job.result["download"], download_name=job.result.get("filename"))
