"""Generate: the form rendered from a model's schema, submitting it as a job, and the gallery pages."""
from flask import abort, current_app, render_template, request
from flask_login import current_user

from app.auth.access import owned_or_404
from app.extensions import db
from app.gallery import Generation
from app.generate import bp
from app.generate.gallery import input_from_gallery
from app.generate.tasks import run_generation
from app.htmx import form_error
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.replicate.catalog import add_model, available_models, is_available, model_schema
from app.replicate.client import ReplicateError
from app.replicate.inputs import prompt_title, with_seed
from app.replicate.schema import input_fields
from app.replicate.forminput import validate_input
from app.uploads import UploadRejected, read_image_upload, store_upload

DEFAULT_MODEL = "black-forest-labs/flux-schnell"


def _form_context(ref: str, values: dict | None = None, errors: dict | None = None, note: str | None = None):
    try:
        schema, schema_note = model_schema(current_user.id, ref)
        fields = input_fields(schema)
    except LookupError as exc:
        fields, schema_note = [], str(exc)
    return {
        "models": available_models(current_user.id),
        "model_ref": ref,
        "fields": fields,
        "values": values or {},
        "errors": errors or {},
        "note": note or schema_note,
        "token_missing": not current_app.config["REPLICATE_API_TOKEN"],
    }


def _chosen_model(ref: str | None) -> str:
    ref = ref or DEFAULT_MODEL
    if not is_available(current_user.id, ref):
        abort(404, f"Unknown model {ref}: add it first.")
    return ref


@bp.get("/")
def index():
    values, ref = {}, request.args.get("model")
    source = request.args.get("from", type=int)
    if source:
        generation = owned_or_404(Generation, source)
        values, ref = dict(generation.params), generation.model_ref
        if generation.seed is not None:
            values["seed"] = generation.seed
    file_entries = {}
    if request.args.get("input"):  # "use as input" from the gallery
        ref, file_entries = input_from_gallery(request.args["input"], ref)
    context = _form_context(_chosen_model(ref), values)
    context["file_entries"] = file_entries
    recent = db.session.scalars(
        db.select(Generation).where(Generation.user_id == current_user.id, Generation.in_gallery)
        .order_by(Generation.id.desc()).limit(8)).all()
    return render_template("generate/index.html", recent=recent, **context)


@bp.get("/generate/form")
def form():
    """The form for another model, keeping what the user already typed into inputs both models share."""
    values = request.args.to_dict()
    ref = _chosen_model(values.pop("model", None))
    previous = values.pop("previous_model", None)
    if previous and is_available(current_user.id, previous):
        # The old model's defaults are not the user's choices; the new model's own defaults win.
        try:
            old_defaults = {f.name: f.default for f in input_fields(model_schema(current_user.id, previous)[0])}
        except LookupError:
            old_defaults = {}
        values = {name: value for name, value in values.items()
                  if name not in old_defaults or value != _as_form_value(old_defaults[name])}
    return render_template("generate/_form.html", **_form_context(ref, values))


def _as_form_value(default) -> str:
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else ""
    return str(default)


@bp.post("/generate")
def submit():
    ref = _chosen_model(request.form.get("model"))
    context = _form_context(ref, request.form.to_dict())
    if context["token_missing"]:
        return _form_error(context)
    fields = context["fields"]
    files, upload_errors, placeholders = {}, {}, {}
    for field in fields:
        if field.kind != "file":
            continue
        storage = request.files.get(field.name)
        if storage is None or not storage.filename:
            continue
        try:
            data, image_format = read_image_upload(storage, current_app.config["MAX_IMAGE_UPLOAD_BYTES"])
        except UploadRejected as exc:
            upload_errors[field.name] = str(exc)
            continue
        files[field.name] = store_upload(current_app.config["DATA_DIR"], data, image_format)
        placeholders[field.name] = "upload"
    values, errors = validate_input(fields, request.form, files=placeholders)
    errors.update(upload_errors)
    if errors:
        context["errors"] = errors
        return _form_error(context)
    for name in files:
        values.pop(name, None)
    with_seed(fields, values)  # picked here so every image can be made again
    try:
        job = enqueue_job(run_generation, user_id=current_user.id, kind="generate.image",
                          title=prompt_title(values.get("prompt", ""), ref),
                          params={"model": ref, "input": values, "files": files})
    except QueueUnavailable as exc:
        context["note"] = str(exc)
        return _form_error(context, status=503)
    return render_template("jobs/_status.html", job=job)


def _form_error(context, status: int = 422):
    # The error belongs in the form, not in the job list the form normally targets.
    return form_error("generate/_form.html", context, target="#generate-form", status=status)


@bp.post("/models")
def add():
    ref = request.form.get("ref", "")
    kind = request.form.get("kind", "text-to-image")
    if kind not in ("text-to-image", "inpaint", "caption"):
        abort(400, "Unknown model kind.")
    try:
        if not current_app.config["REPLICATE_API_TOKEN"]:
            raise ValueError("Set REPLICATE_API_TOKEN first: the model's options are read from Replicate.")
        add_model(current_user.id, ref, kind)
    except (ValueError, ReplicateError) as exc:
        db.session.rollback()
        return form_error("generate/_add_model.html",
                          {"add_error": getattr(exc, "message", None) or str(exc), "add_ref": ref},
                          target="#add-model-form")
    return render_template("generate/_form.html", **_form_context(ref.strip()))
