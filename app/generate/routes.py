"""Generate: the form rendered from a model's schema, submitting it as a job, and the gallery pages."""
from flask import Response, abort, current_app, render_template, request, url_for
from flask_login import current_user
from redis.exceptions import RedisError

from app.auth.access import owned_or_404
from app.canvas import canvas_for_input, recent_canvases
from app.extensions import db
from app.files import send_data_file
from app.gallery import Generation, OutputFile
from app.generate import bp
from app.generate.inputs import collect_files, entries_of_job, shown_entries
from app.generate.tasks import run_generation
from app.htmx import form_error
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.loras import apply_form_loras, picker_context
from app.models import Job
from app.replicate.catalog import add_model, available_models, is_available, model_schema
from app.replicate.client import ReplicateError
from app.replicate.forminput import parse_file_entry, validate_input
from app.replicate.inputs import prompt_title, stash_secrets, with_seed
from app.replicate.schema import Field, input_fields, without_secrets

DEFAULT_MODEL = "black-forest-labs/flux-schnell"
LORA_MODEL = "black-forest-labs/flux-dev-lora"  # what "Generate with this LoRA" opens
# "Use as input" without a model named opens this one: it edits the one image it is given.
EDIT_MODEL = "black-forest-labs/flux-kontext-pro"
# Which image input "use as input" fills when the model has several.
IMAGE_INPUT_NAMES = ("image", "input_image", "image_input", "input_images", "init_image")
PICKER_SIZE = 48


def _form_context(ref: str, values: dict | None = None, errors: dict | None = None, note: str | None = None,
                  shown: dict | None = None):
    try:
        schema, schema_note = model_schema(current_user.id, ref)
        fields = input_fields(schema)
    except LookupError as exc:
        fields, schema_note = [], str(exc)
    values = values or {}
    return {
        "models": available_models(current_user.id),
        "model_ref": ref,
        "fields": fields,
        "values": values,
        "errors": errors or {},
        "note": note or schema_note,
        "token_missing": not current_app.config["REPLICATE_API_TOKEN"],
        **picker_context(current_user.id, [field.name for field in fields], values),
        "file_entries": shown if shown is not None else shown_entries(fields, values, current_user.id),
        "picker_url": url_for("generate.picker"),
        # Left out of the GET that re-renders the form for another model: it would put them in a URL.
        "secret_names": [f.name for f in fields if f.secret],
    }


def _chosen_model(ref: str | None) -> str:
    ref = ref or DEFAULT_MODEL
    if not is_available(current_user.id, ref):
        abort(404, f"Unknown model {ref}: add it first.")
    return ref


@bp.get("/")
def index():
    """The form. ``?from=<generation id>``: that image's settings again; ``?use=generation:<id>`` or
    ``?use=canvas:<id>`` (optionally ``&model=<ref>&field=<input>``): that picture in an image input
    ("use as input"); ``?fix=<job id>``: a job the model refused, with the reasons by the fields."""
    values, errors, note, ref = {}, {}, None, request.args.get("model")
    if request.args.get("lora", type=int):  # "Generate with it" from a LoRA's page
        values["lora"] = request.args["lora"]
        ref = ref or (LORA_MODEL if is_available(current_user.id, LORA_MODEL) else None)
    if request.args.get("prompt"):  # e.g. a trained LoRA's trigger word
        values["prompt"] = request.args["prompt"]
    source = request.args.get("from", type=int)
    if source:
        generation = owned_or_404(Generation, source)
        values, ref = dict(generation.params), generation.model_ref
        if generation.seed is not None:
            values["seed"] = generation.seed
        for item in generation.loras or []:
            values[f"lora_{item['slot'] + 1}"], values[f"lora_{item['slot'] + 1}_scale"] = item["id"], item["scale"]
    fix = request.args.get("fix")
    if fix:
        job = owned_or_404(Job, fix)
        if not job.kind.startswith("generate") or "model" not in (job.params or {}):
            abort(404)
        values = {**job.params.get("input", {}), **entries_of_job(job.params.get("files") or {})}
        ref = job.params["model"]
        errors = dict((job.result or {}).get("invalid_fields") or {})
        note = "Replicate refused this input; fix the fields marked below and generate again."
    use = request.args.get("use")
    if use:
        ref = ref or EDIT_MODEL
    context = _form_context(_chosen_model(ref), values, errors, note)
    if use:
        _use_as_input(context, use, request.args.get("field"))
    recent = db.session.scalars(
        db.select(Generation).where(Generation.user_id == current_user.id, Generation.in_gallery)
        .order_by(Generation.id.desc()).limit(8)).all()
    return render_template("generate/index.html", recent=recent, **context)


def _use_as_input(context: dict, use: str, field_name: str | None) -> None:
    """Put a gallery image or canvas picture into an image input of the form (404 if not the user's)."""
    entry = parse_file_entry(use)
    if entry is None or entry.source not in ("generation", "canvas"):
        abort(404)
    if entry.source == "generation":
        owned_or_404(Generation, int(entry.value))
    else:
        try:
            canvas_for_input(current_user.id, int(entry.value))
        except LookupError:
            abort(404)
        except ValueError as exc:
            context["note"] = str(exc)
            return
    target = _image_input(context["fields"], field_name)
    if target is None:
        context["note"] = "This model takes no input image: choose a model that does (e.g. FLUX.1 Kontext)."
        return
    context["values"][target.name] = [use]
    context["file_entries"] = shown_entries(context["fields"], context["values"], current_user.id)


def _image_input(fields: list[Field], name: str | None) -> Field | None:
    files = [f for f in fields if f.is_file]
    by_name = {f.name: f for f in files}
    if name in by_name:
        return by_name[name]
    return next((by_name[n] for n in IMAGE_INPUT_NAMES if n in by_name), files[0] if files else None)


@bp.get("/generate/form")
def form():
    """The form for another model, keeping what the user already typed into inputs both models share,
    and the images chosen for an image input (moved to the new model's image input if it is named
    otherwise)."""
    sent = request.args.to_dict(flat=False)
    ref = _chosen_model((sent.pop("model", None) or [None])[0])
    previous = (sent.pop("previous_model", None) or [None])[0]
    old_fields = []
    if previous and is_available(current_user.id, previous):
        try:
            old_fields = input_fields(model_schema(current_user.id, previous)[0])
        except LookupError:
            old_fields = []
    old_files = {f.name for f in old_fields if f.is_file}
    # The old model's defaults are not the user's choices; the new model's own defaults win.
    old_defaults = {f.name: f.form_text(f.default) for f in old_fields}
    values = {}
    for name, items in sent.items():
        if name in old_files:
            continue
        value = items[0] if items else ""
        if name in old_defaults and value == old_defaults[name]:
            continue
        values[name] = value
    context = _form_context(ref, values)
    chosen = [item for name in old_files for item in sent.get(name, []) if item.strip()
              and (entry := parse_file_entry(item)) is not None and entry.source != "part"]
    if chosen:
        target = next((f for f in context["fields"] if f.is_file and f.name in old_files), None)
        target = target or _image_input(context["fields"], None)
        if target is not None:
            context["values"][target.name] = chosen if target.kind == "files" else chosen[:1]
            context["file_entries"] = shown_entries(context["fields"], context["values"], current_user.id)
    return render_template("generate/_form.html", **context)


@bp.post("/generate")
def submit():
    ref = _chosen_model(request.form.get("model"))
    context = _form_context(ref, request.form.to_dict(), shown={})
    if context["token_missing"]:
        return _form_error(context)
    fields = context["fields"]
    choice = collect_files(fields, request.form, request.files, current_user.id)
    values, errors = validate_input(fields, request.form,
                                    files={f.name: choice.values.get(f.name, []) for f in fields if f.is_file})
    errors.update(choice.errors)
    if errors:
        context["errors"], context["file_entries"] = errors, choice.shown
        return _form_error(context)
    public = {name: value for name, value in without_secrets(fields, values).items() if name not in choice.refs}
    secrets = {f.name: values[f.name] for f in fields if f.secret and f.name in values}
    with_seed(fields, public)  # picked here so every image can be made again
    try:
        loras = apply_form_loras(current_user.id, request.form, public, [field.name for field in fields])
    except ValueError as exc:
        context["errors"], context["note"], context["file_entries"] = {"lora_1": str(exc)}, str(exc), choice.shown
        return _form_error(context)
    try:
        # Secrets wait in Redis for the job, never in its row (see app.replicate.inputs).
        secrets_key = stash_secrets(current_app.redis, secrets)
        job = enqueue_job(run_generation, user_id=current_user.id, kind="generate.image",
                          title=prompt_title(public.get("prompt", ""), ref),
                          params={"model": ref, "input": public, "files": choice.refs, "secrets": secrets_key,
                                  "secret_names": sorted(secrets), "loras": loras},
                          interactive=True)  # one prediction whose progress the page shows
    except (QueueUnavailable, RedisError) as exc:
        context["note"] = str(exc) if isinstance(exc, QueueUnavailable) else (
            "The job queue is not reachable (Redis), so nothing was queued. Start Tessera with `tessera up`, "
            "or check REDIS_URL.")
        context["file_entries"] = choice.shown
        return _form_error(context, status=503)
    return render_template("jobs/_status.html", job=job)


def _form_error(context, status: int = 422):
    # The error belongs in the form, not in the job list the form normally targets.
    return form_error("generate/_form.html", context, target="#generate-form", status=status)


@bp.get("/generate/picker")
def picker():
    """The "from gallery or canvas" dialog of a file control: the user's recent images and canvases."""
    generations = db.session.scalars(
        db.select(Generation).where(Generation.user_id == current_user.id, Generation.in_gallery)
        .order_by(Generation.id.desc()).limit(PICKER_SIZE)).all()
    return render_template("generate/_picker.html", generations=generations,
                           canvases=recent_canvases(current_user.id),
                           field_title=request.args.get("field", "this input")[:100])


@bp.get("/outputs/<int:output_id>")
def output_file(output_id):
    """A kept non-image output: played inline when browsers play it, else (or with ?download=1) a download."""
    output = owned_or_404(OutputFile, output_id)
    download = bool(request.args.get("download")) or not output.playable
    if output.kind == "text":
        response = Response(output.text or "", mimetype="text/plain")
        response.headers["Content-Disposition"] = f"attachment; filename={output.download_name.replace('.bin', '.txt')}"
        return response
    return send_data_file(output.path, mimetype=output.content_type,
                          download_name=output.download_name if download else None, immutable=True)


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


@bp.app_template_global()
def output_files_by_id(ids: list[int]) -> list[OutputFile]:
    if not ids:
        return []
    rows = db.session.scalars(db.select(OutputFile).where(OutputFile.id.in_(ids))).all()
    return sorted(rows, key=lambda row: ids.index(row.id))
