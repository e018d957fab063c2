"""The canvas pages and their HTMX partials: the list of canvases, the canvas page, the generation
form (its model options, submitting it as a job, "generate more").

Views are parse → act → render: `params` parses and checks, `staging` creates the request's rows
and files, `enqueue_job` queues `run_canvas_generation`. The JSON that canvas.js calls is in `api`.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app.auth.access import child_or_404, owned_or_404
from app.canvas import bp, history, staging
from app.canvas.compose import available_infill_methods
from app.canvas.modelchoice import DEFAULT_MODEL, CanvasModel, canvas_model, carry_input, form_fields, picker_models
from app.canvas.models import Canvas, CanvasRequest, CanvasVariation
from app.canvas.params import DEFAULT_INFILL, FRAME_LIMITS, PUSH_RETRY_MS, GenerateParams
from app.canvas.tasks import run_canvas_generation
from app.extensions import db
from app.files import send_data_file
from app.htmx import form_error, is_htmx, message
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.loras import apply_form_loras, picker_context
from app.models import Job
from app.replicate.inputs import prompt_title, random_seed

NAME_MAX = 120
DEFAULT_FRAME = (0, 0, 1024, 1024)
DEFAULT_MASK_BLUR = 8


# ---- the list ----------------------------------------------------------------------------------


@bp.get("/")
def index():
    canvases = db.session.scalars(
        db.select(Canvas).where(Canvas.user_id == current_user.id).order_by(Canvas.updated_at.desc())).all()
    store = staging.tile_store()
    # Made again here when stale, so the list's images are files served as they are.
    with_thumbnail = {canvas.id for canvas in canvases if staging.refresh_thumbnail(store, canvas) is not None}
    return render_template("canvas/index.html", canvases=canvases, with_thumbnail=with_thumbnail)


@bp.post("/")
def create():
    name = _name(request.form.get("name")) or "Untitled canvas"
    canvas = Canvas(user_id=current_user.id, name=name, settings={})
    db.session.add(canvas)
    db.session.commit()
    return redirect(url_for("canvas.page", canvas_id=canvas.id))


@bp.post("/<int:canvas_id>/rename")
def rename(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    name = _name(request.form.get("name"))
    error = None if name else "Give the canvas a name."
    if name:
        canvas.name = name
        db.session.commit()
    if is_htmx():
        has_thumbnail = staging.refresh_thumbnail(staging.tile_store(), canvas) is not None
        return render_template("canvas/_item.html", canvas=canvas, has_thumbnail=has_thumbnail,
                               rename_error=error), 422 if error else 200
    if error:
        flash(error, "error")
    return redirect(url_for("canvas.index"))


@bp.post("/<int:canvas_id>/delete")
def delete(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    name = canvas.name
    staging.delete_canvas(staging.tile_store(), canvas)
    flash(f"Deleted “{name}”.", "info")
    return redirect(url_for("canvas.index"))


@bp.get("/<int:canvas_id>/thumbnail.png")
def thumbnail(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    relpath = staging.refresh_thumbnail(staging.tile_store(), canvas)
    if relpath is None:
        abort(404)
    return send_data_file(relpath, mimetype="image/png")


# ---- the page and its request form ------------------------------------------------------------


@bp.get("/<int:canvas_id>")
def page(canvas_id):
    canvas = owned_or_404(Canvas, canvas_id)
    settings = canvas.settings or {}
    store = staging.tile_store()
    context = _form_context(canvas, settings.get("model") or DEFAULT_MODEL, dict(settings.get("input") or {}))
    # Generations still under way show their progress again after a reload.
    unfinished = db.session.scalars(
        db.select(Job).join(CanvasRequest, CanvasRequest.job_id == Job.id)
        .where(CanvasRequest.canvas_id == canvas.id, Job.status.in_([Job.QUEUED, Job.RUNNING]))
        .order_by(Job.created_at.desc())).all()
    steps = history.summary(store, canvas.id, current_user.id)
    return render_template("canvas/page.html", store=store, head=store.head(canvas.id), history=steps,
                           can_undo=steps["can_undo"], can_redo=steps["can_redo"],
                           unfinished_jobs=unfinished, **context)


@bp.get("/<int:canvas_id>/form")
def model_options(canvas_id):
    """The model's options, swapped in when the user picks another model; typed values the new model
    also takes are kept, the rest start from its defaults."""
    canvas = owned_or_404(Canvas, canvas_id)
    context = _form_context(canvas, request.args.get("model") or DEFAULT_MODEL, {})
    typed = request.args.to_dict()
    context["values"] = {name: typed[name] for name in carry_input(typed, context["fields"])}
    return render_template("canvas/_model_options.html", **context)


@bp.post("/<int:canvas_id>/generate")
def generate(canvas_id):
    """Stage a generation for the frame: answers the job's status partial, or the form with its errors."""
    canvas = owned_or_404(Canvas, canvas_id)
    context = _form_context(canvas, request.form.get("model") or DEFAULT_MODEL, request.form.to_dict(),
                            submitted=True)
    model: CanvasModel | None = context["model"]
    if model is None or context["token_missing"]:
        return _form_error(context)
    params = GenerateParams.from_form(request.form, request.files, model=model, fields=context["fields"],
                                      store=staging.tile_store(), canvas_id=canvas.id,
                                      max_mask_bytes=current_app.config["MAX_IMAGE_UPLOAD_BYTES"])
    if params.errors:
        context["errors"].update(params.errors)
        return _form_error(context)
    try:
        loras = apply_form_loras(current_user.id, request.form, params.model_input,
                                 [field.name for field in context["fields"]])
    except ValueError as exc:
        context["errors"]["lora_1"] = context["note"] = str(exc)
        return _form_error(context)

    canvas_request = staging.create_request(canvas, model_ref=model.ref, model_input=params.model_input,
                                            frame=params.frame, painted=params.painted, infill=params.infill,
                                            mask_blur=params.mask_blur, colour_match=params.colour_match)
    canvas.settings = params.remembered(model.ref)
    try:
        job = _enqueue(canvas_request, loras)
    except QueueUnavailable as exc:
        context["note"] = str(exc)
        return _form_error(context, status=503)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<int:canvas_id>/requests/<int:request_id>/more")
def generate_more(canvas_id, request_id):
    """The same frame, mask and options again with a new seed."""
    canvas = owned_or_404(Canvas, canvas_id)
    source = child_or_404(CanvasRequest, request_id, canvas_id=canvas.id)
    model_input = dict(source.model_input)
    if "seed" in model_input:
        model_input["seed"] = random_seed()
    try:
        job = _enqueue(staging.copy_request(source, model_input), _loras_of(source))
    except QueueUnavailable as exc:
        return message(str(exc), 503)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<int:canvas_id>/variations/<int:variation_id>/again")
def make_again(canvas_id, variation_id):
    """The same request again, same seed and input, staging only this variation's output: the model
    draws all N outputs from the seed, so output i comes back as it was."""
    canvas = owned_or_404(Canvas, canvas_id)
    variation = child_or_404(CanvasVariation, variation_id, canvas_id=canvas.id)
    source = variation.request
    if source.model_input.get("seed") is None:
        return message("This variation's model takes no seed, so it cannot be made again exactly: "
                       "use Generate more.", 422)
    try:
        job = _enqueue(staging.copy_request(source, dict(source.model_input), only_output=variation.output_index),
                       _loras_of(source))
    except QueueUnavailable as exc:
        return message(str(exc), 503)
    return render_template("jobs/_status.html", job=job)


def _loras_of(source: CanvasRequest) -> list[dict]:
    """The LoRAs an earlier request was made with (kept in its job's params)."""
    previous = db.session.get(Job, source.job_id) if source.job_id else None
    return (previous.params or {}).get("loras") or [] if previous else []


def _enqueue(canvas_request: CanvasRequest, loras: list[dict] | None = None) -> Job:
    title = "Canvas: " + prompt_title(canvas_request.model_input.get("prompt", ""), canvas_request.model_ref)
    db.session.commit()  # the request must exist before a worker can pick the job up
    job = enqueue_job(run_canvas_generation, user_id=current_user.id, kind="canvas.generate", title=title,
                      params={"request_id": canvas_request.id, "loras": loras or []},
                      interactive=True)  # one prediction whose variations the canvas waits for
    canvas_request.job_id = job.id
    db.session.commit()
    return job


def _form_context(canvas: Canvas, ref: str, values: dict, *, submitted: bool = False) -> dict:
    """What the form needs; ``values`` are the model's input (and, when ``submitted``, the whole form)."""
    inpaint_models, text_models = picker_models(current_user.id)
    model, fields, note = None, [], None
    try:
        model, all_fields, note = canvas_model(current_user.id, ref)
        fields = form_fields(model, all_fields)
    except LookupError as exc:
        note = str(exc)
    settings = canvas.settings or {}
    frame = _frame_values(values, settings.get("frame") or DEFAULT_FRAME)
    blending = values if submitted else settings
    return {
        "canvas": canvas, "inpaint_models": inpaint_models, "text_models": text_models, "model": model,
        "model_ref": ref, "fields": fields, "values": values, "errors": {}, "note": note, "frame": frame,
        "token_missing": not current_app.config["REPLICATE_API_TOKEN"],
        "infill_methods": available_infill_methods(),
        "infill": blending.get("infill") or DEFAULT_INFILL,
        "mask_blur": blending.get("mask_blur", DEFAULT_MASK_BLUR),
        "colour_match": bool(blending.get("colour_match")),
        "limits": FRAME_LIMITS, "push_retry_ms": " ".join(map(str, PUSH_RETRY_MS)),
        **picker_context(current_user.id, [field.name for field in fields], values),
    }


def _frame_values(values: dict, saved) -> dict:
    names = ("frame_x", "frame_y", "frame_w", "frame_h")
    return {name: values.get(name, saved[index]) for index, name in enumerate(names)}


def _form_error(context: dict, status: int = 422):
    # The error belongs in the form, not in the job list the form normally targets.
    return form_error("canvas/_form.html", context, target="#canvas-form", status=status)


def _name(raw: str | None) -> str:
    return " ".join((raw or "").split())[:NAME_MAX]
