"""LoRA pages: train one from a dataset, follow it, list and import LoRAs, download weights, sample grids."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user
from markupsafe import Markup
from redis.exceptions import RedisError
from sqlalchemy import select

from app.auth.access import owned_or_404
from app.datasets import Dataset, scope_images
from app.extensions import db
from app.files import send_data_file
from app.htmx import form_error, message, redirect_page
from app.jobs.runner import QueueUnavailable, cancel_job, enqueue_job, retry_job, wake_deferred
from app.loras import bp
from app.loras.models import Lora
from app.loras.tasks import SAMPLE_SCALES, SECRET_KEY, SECRET_TTL, lora_folder, run_samples, run_training
from app.loras.training import loss_chart_svg, parse_resolutions, preflight, read_json, training_facts
from app.loras.use import ReferenceError, parse_reference, with_trigger
from app.models import Job
from app.replicate.catalog import add_model, client_from_config, is_available
from app.replicate.inputs import random_seed
from app.replicate.client import ReplicateError, parse_model_ref
from app.replicate.forminput import validate_input
from app.replicate.schema import input_fields, secret_names
from app.replicate.trainers import (
    FLUX_LORA_TRAINER, FLUX_LORA_TRAINER_SCHEMA, as_input_schema, training_input_schema,
)
from app.replicate.trainings import DestinationNameError, split_destination, suggest_destination_name

SAMPLE_MODEL = "black-forest-labs/flux-dev-lora"
CAPTIONS_SHOWN = 200
PAGE_FIELDS = ("input_images",)  # filled by Tessera
# Shown up front on the Train page (the rest under "Advanced"): what decides what is learnt and its cost.
TRAINING_COMMON = frozenset({"trigger_word", "steps", "lora_rank", "resolution", "autocaption", "batch_size",
                             "learning_rate", "max_train_steps", "network_dim", "rank"})


def _owned_lora(lora_id: int) -> Lora:
    return owned_or_404(Lora, lora_id)


# --- the LoRAs page -----------------------------------------------------------------------------


@bp.get("/")
def index_page():
    loras = db.session.scalars(select(Lora).where(Lora.user_id == current_user.id)
                               .order_by(Lora.created_at.desc(), Lora.id.desc())).all()
    return render_template("loras/index.html", ready=[l for l in loras if l.ready],
                           working=[l for l in loras if not l.ended], ended=[l for l in loras if l.ended and not l.ready])


@bp.post("/import")
def import_lora():
    text = request.form.get("reference", "")
    name = " ".join(request.form.get("name", "").split())[:200]
    trigger = " ".join(request.form.get("trigger", "").split())[:200]
    try:
        reference = parse_reference(text)
    except ReferenceError as exc:
        return _import_error(str(exc), text, name, trigger)
    if reference.source == "replicate" and current_app.config["REPLICATE_API_TOKEN"]:
        # Check now that Replicate can see it, rather than failing a paid prediction later.
        owner, model, *version = reference.value.split("/")
        try:
            with client_from_config() as client:
                client.get_model(f"{owner}/{model}" + (f":{version[0]}" if version else ""))
        except ReplicateError as exc:
            return _import_error(exc.message, text, name, trigger)
    lora = Lora(user_id=current_user.id, name=name or reference.name, source=reference.source, status=Lora.READY,
                trigger=trigger, reference=reference.value)
    db.session.add(lora)
    db.session.commit()
    flash(f"Imported {lora.name}.", "success")
    return redirect(url_for("loras.show", lora_id=lora.id), 303)


def _import_error(text: str, reference: str, name: str, trigger: str):
    return form_error("loras/_import.html", {"import_error": text, "values": {
        "reference": reference, "name": name, "trigger": trigger}}, target="#lora-import")


@bp.get("/<int:lora_id>")
def show(lora_id):
    lora = _owned_lora(lora_id)
    captions, caption_count = [], 0
    if lora.captions_path:
        try:
            snapshot = read_json(Path(current_app.config["DATA_DIR"]) / lora.captions_path)
            caption_count = len(snapshot)
            captions = list(snapshot.items())[:CAPTIONS_SHOWN]
        except (OSError, ValueError):
            captions = []
    job = db.session.get(Job, lora.job_id) if lora.job_id else None
    samples = _sample_jobs(lora)
    return render_template("loras/show.html", lora=lora, job=job, captions=captions, caption_count=caption_count,
                           samples=samples, sample_scales=SAMPLE_SCALES,
                           facts=training_facts(lora.training_input, lora.image_count) if lora.source == "trained" else [])


@bp.get("/<int:lora_id>/progress")
def progress(lora_id):
    lora = _owned_lora(lora_id)
    if lora.ended:
        # Done: load the whole page again, which now offers the weights, the sample grid and "use it".
        return redirect_page(make_response("", 204), url_for("loras.show", lora_id=lora.id))
    job = db.session.get(Job, lora.job_id) if lora.job_id else None
    return render_template("loras/_progress.html", lora=lora, job=job, oob=True)


@bp.app_template_global()
def lora_loss_chart(lora: Lora) -> Markup:
    points = [(int(step), float(loss)) for step, loss in (lora.progress or {}).get("losses", [])]
    return Markup(loss_chart_svg(points, total=(lora.progress or {}).get("total")))


@bp.post("/<int:lora_id>/cancel")
def cancel(lora_id):
    lora = _owned_lora(lora_id)
    job = db.session.get(Job, lora.job_id) if lora.job_id else None
    if job is not None and not job.ended:
        cancel_job(job)
        if job.ended and not lora.ended:  # it had not started: nothing exists on Replicate
            lora.status = Lora.CANCELED
            db.session.commit()
        elif lora.training_id:
            # Stop paying at once; the job sees the training canceled at its next look.
            try:
                with client_from_config() as client:
                    client.cancel_training(lora.training_id)
            except ReplicateError as exc:
                flash(f"Replicate did not confirm the cancel: {exc.message} The job will try again.", "error")
            wake_deferred(lora.training_id)  # record the end now rather than at the next look
    return render_template("loras/_progress.html", lora=lora, job=job, oob=True)


@bp.post("/<int:lora_id>/run")
def use_trained_version(lora_id):
    """Generate with the trained version itself: added to the user's models (its schema read from
    Replicate), then opened on Generate with the trigger word in the prompt."""
    lora = _owned_lora(lora_id)
    if not lora.ready or not lora.version:
        abort(409, "Only a trained LoRA has a version of its own to run.")
    if not is_available(current_user.id, lora.version):
        try:
            add_model(current_user.id, lora.version, "text-to-image").label = f"{lora.name} (trained LoRA)"
            db.session.commit()
        except (ValueError, ReplicateError) as exc:
            db.session.rollback()
            flash(getattr(exc, "message", None) or str(exc), "error")
            return redirect(url_for("loras.show", lora_id=lora.id), 303)
    return redirect(url_for("generate.index", model=lora.version, prompt=lora.trigger or None), 303)


@bp.post("/<int:lora_id>/retry")
def retry(lora_id):
    """Run the training job again: it polls the stored training when there is one, never a second."""
    lora = _owned_lora(lora_id)
    job = db.session.get(Job, lora.job_id) if lora.job_id else None
    if job is None or not job.ended or lora.status not in (Lora.FAILED, Lora.CANCELED):
        abort(409, "Only a failed or canceled training can be retried.")
    if (lora.progress or {}).get("status") in ("failed", "canceled"):
        # That training ended on Replicate: the user asks for a new one (the uploaded zip is reused).
        lora.training_id, job.prediction_id, lora.progress = None, None, {}
        job.result = {"upload_url": (job.result or {}).get("upload_url")}
    lora.status = Lora.TRAINING if lora.training_id else Lora.PREPARING
    lora.error, lora.finished_at = None, None
    db.session.commit()
    try:
        retry_job(job)
    except QueueUnavailable as exc:
        lora.status, lora.error = Lora.FAILED, str(exc)
        db.session.commit()
    return render_template("loras/_progress.html", lora=lora, job=job, oob=True)


@bp.post("/<int:lora_id>/delete")
def delete(lora_id):
    lora = _owned_lora(lora_id)
    job = db.session.get(Job, lora.job_id) if lora.job_id else None
    if job is not None and not job.ended:
        abort(409, "Cancel the training before deleting the LoRA.")
    shutil.rmtree(lora_folder(Path(current_app.config["DATA_DIR"]), lora.id), ignore_errors=True)
    name = lora.name
    db.session.delete(lora)
    db.session.commit()
    flash(f"Deleted {name}. Its model on Replicate is kept; delete it there if you no longer need it.", "success")
    return redirect(url_for("loras.index_page"), 303)


@bp.get("/<int:lora_id>/lora.safetensors")
def weights(lora_id):
    lora = _owned_lora(lora_id)
    if not lora.weights_path:
        abort(404, "This LoRA's weights are not in the data folder.")
    filename = f"{lora.name}.safetensors".replace("/", "-")
    return send_data_file(lora.weights_path, mimetype="application/octet-stream", download_name=filename)


@bp.post("/<int:lora_id>/samples")
def samples(lora_id):
    lora = _owned_lora(lora_id)
    if not lora.ready:
        abort(409, "The LoRA is not ready yet.")
    prompt = " ".join(request.form.get("prompt", "").split()) or f"{lora.trigger or 'a photo'}, portrait, detailed"
    seed = request.form.get("seed", type=int)
    if seed is None or not 0 <= seed <= 2**31 - 1:
        seed = random_seed()
    model_input = {"prompt": with_trigger(prompt, lora.trigger), "seed": seed, "num_outputs": 1,
                   "output_format": "png"}
    try:
        job = enqueue_job(run_samples, user_id=current_user.id, kind="loras.samples",
                          title=f"Sample grid of {lora.name}",
                          params={"lora_id": lora.id, "model": SAMPLE_MODEL, "input": model_input,
                                  "scales": list(SAMPLE_SCALES)})
    except QueueUnavailable as exc:
        return message(str(exc), 503)
    return render_template("jobs/_status.html", job=job)


def _sample_jobs(lora: Lora) -> list[Job]:
    return db.session.scalars(select(Job).where(Job.user_id == current_user.id, Job.kind == "loras.samples")
                              .order_by(Job.created_at.desc()).limit(20)).all()


# --- training -----------------------------------------------------------------------------------


_TRAINERS: dict[tuple[str, str, str], tuple[float, object]] = {}  # (base, token, ref) -> (fetched at, ModelInfo)
TRAINER_SCHEMA_TTL = 600.0  # the form re-checks on every change; a trainer's schema changes rarely


def _trainer_info(ref: str):
    """The trainer's model info from Replicate, cached per process for a few minutes."""
    key = (current_app.config["REPLICATE_API_BASE"], current_app.config["REPLICATE_API_TOKEN"], ref)
    cached = _TRAINERS.get(key)
    if cached is not None and time.monotonic() - cached[0] < TRAINER_SCHEMA_TTL:
        return cached[1]
    with client_from_config() as client:
        info = client.get_model(ref)
    _TRAINERS[key] = (time.monotonic(), info)
    return info


def _trainer_schema(ref: str) -> tuple[str, dict, str | None]:
    """(trainer ref to train with, its openapi schema, a note). The default trainer's bundled schema is
    used when Replicate cannot be asked; then the latest version is resolved when the training starts."""
    ref = (ref or FLUX_LORA_TRAINER).strip()
    try:
        owner, name, version = parse_model_ref(ref)
    except ValueError as exc:
        raise LookupError(str(exc)) from exc
    if owner is None:
        raise LookupError("Write the trainer as owner/name or owner/name:<version id>.")
    if current_app.config["REPLICATE_API_TOKEN"]:
        try:
            info = _trainer_info(ref)
        except ReplicateError as exc:
            if ref != FLUX_LORA_TRAINER:
                raise LookupError(exc.message) from exc
        else:
            if not training_input_schema(info.openapi_schema):
                raise LookupError(f"{owner}/{name} cannot be trained: its schema has no TrainingInput.")
            return f"{owner}/{name}:{info.version_id}", info.openapi_schema, None
    if ref != FLUX_LORA_TRAINER:
        raise LookupError("Set REPLICATE_API_TOKEN to train with another trainer: its form is read from Replicate.")
    return FLUX_LORA_TRAINER, FLUX_LORA_TRAINER_SCHEMA, "The form shows the trainer's options as bundled with Tessera."


def _train_context(dataset: Dataset, form, *, errors: dict | None = None, note: str | None = None) -> dict:
    scope = form.get("scope", "all")
    if scope not in ("all", "filtered", "selected"):
        scope = "all"
    ids = [int(i) for i in form.getlist("ids") if str(i).isdigit()]
    trainer_ref = form.get("trainer") or FLUX_LORA_TRAINER
    try:
        trainer, schema, schema_note = _trainer_schema(trainer_ref)
        fields = [replace(f, advanced=f.name not in TRAINING_COMMON)
                  for f in input_fields(as_input_schema(schema)) if f.name not in PAGE_FIELDS]
    except LookupError as exc:
        trainer, fields, schema_note = trainer_ref, [], None
        errors = {**(errors or {}), "trainer": str(exc)}
    try:
        images, scope_label = scope_images(dataset, scope, form, ids)
    except ValueError as exc:
        images, scope_label = [], "the filtered images"
        errors = {**(errors or {}), "preflight": f"The filter cannot be used: {exc}"}
    values = {key: value for key, value in form.items() if key not in ("csrf_token", "ids")}
    # An unticked box sends nothing: "add_trigger_shown" tells a first visit (on by default) from "off".
    values["add_trigger"] = "1" if not form.get("add_trigger_shown") or form.get("add_trigger") else ""
    values.setdefault("trigger_word", dataset.trigger or "TOK")
    values.setdefault("autocaption", "")  # the dataset's captions are the point; autocaption only if asked
    values.setdefault("destination", suggest_destination_name(dataset.name))
    trigger = values.get("trigger_word") or ""
    autocaption = values.get("autocaption") in ("true", "on", "1")
    resolution = values.get("resolution") or next((f.default for f in fields if f.name == "resolution"), "512")
    report = preflight(images, trigger=trigger, resolutions=parse_resolutions(resolution), autocaption=autocaption,
                       add_trigger=bool(values["add_trigger"]))
    facts_input = {f.name: values.get(f.name, f.default) for f in fields if f.name in (
        "steps", "lora_rank", "batch_size", "resolution")}
    for key in ("steps", "lora_rank", "batch_size"):
        try:
            facts_input[key] = int(facts_input[key]) if facts_input.get(key) not in (None, "") else None
        except (TypeError, ValueError):
            facts_input[key] = None
    return {"dataset": dataset, "scope": scope, "scope_label": scope_label, "ids": ids, "trainer": trainer,
            "trainer_ref": trainer_ref, "fields": fields, "values": values, "errors": errors or {},
            "note": note or schema_note, "report": report, "facts": training_facts(facts_input, report.image_count),
            "filter_args": {k: form.get(k) for k in ("q", "untagged", "search") if form.get(k)},
            "secret_names": secret_names(fields), "token_missing": not current_app.config["REPLICATE_API_TOKEN"]}


@bp.route("/train/<int:dataset_id>", methods=["GET", "POST"])
def train(dataset_id):
    """The Train page. GET with ?scope=all|filtered (+ the filter) or POST with scope=selected and ids."""
    dataset = owned_or_404(Dataset, dataset_id)
    return render_template("loras/train.html", **_train_context(dataset, request.values))


# The Train page is one of its dataset's pages (it carries the dataset's sub-navigation, "Train a LoRA"
# marked there): the main navigation marks Datasets, where the user came from, as the sub-nav does.
train.nav_item = "datasets.index"


@bp.post("/train/<int:dataset_id>/check")
def check(dataset_id):
    """The pre-flight check and the facts for what is typed now (HTMX; the form itself stays as it is)."""
    dataset = owned_or_404(Dataset, dataset_id)
    return render_template("loras/_preflight.html", **_train_context(dataset, request.form))


@bp.post("/train/<int:dataset_id>/start")
def start(dataset_id):
    dataset = owned_or_404(Dataset, dataset_id)
    context = _train_context(dataset, request.form)
    errors = dict(context["errors"])
    try:
        owner, name = split_destination(request.form.get("destination", ""))
    except DestinationNameError as exc:
        errors["destination"] = str(exc)
        owner, name = "", ""
    secret_names = context["secret_names"]
    values, field_errors = validate_input(context["fields"], request.form, files={})
    errors.update(field_errors)
    report = context["report"]
    if context["token_missing"]:
        errors["token"] = "Set REPLICATE_API_TOKEN before training: the training runs on Replicate."
    if not report.ok:
        errors["preflight"] = "Fix the errors the check lists first; they would waste a paid training."
    elif report.warnings and request.form.get("accept_warnings") not in ("1", "on", "true"):
        errors["accept_warnings"] = "Read the warnings, then tick “Train anyway” to go on past them."
    if errors:
        context["errors"] = errors
        return form_error("loras/_train_form.html", context, target="#train-form")
    secrets = {key: values.pop(key) for key in list(values) if key in secret_names and values.get(key)}
    trigger = str(values.get("trigger_word") or "").strip()
    lora = Lora(user_id=current_user.id, name=name, source="trained", status=Lora.PREPARING, trigger=trigger,
                dataset_id=dataset.id, dataset_name=dataset.name, trainer=context["trainer"], training_input=values,
                destination=f"{owner}/{name}", image_count=report.image_count)
    db.session.add(lora)
    db.session.commit()
    ids = [image.id for image in scope_images(dataset, context["scope"], request.form, context["ids"])[0]
           if not image.error]
    params = {"lora_id": lora.id, "image_ids": ids if context["scope"] != "all" else None,
              "add_trigger": bool(context["values"]["add_trigger"]),
              "strip_escapes": request.form.get("strip_escapes") in ("1", "on", "true")}
    try:
        job = enqueue_job(run_training, user_id=current_user.id, kind="loras.train", title=f"Train LoRA {name}",
                          params=params, timeout=3600)
    except QueueUnavailable as exc:
        lora.status, lora.error = Lora.FAILED, str(exc)
        db.session.commit()
        context["errors"] = {"preflight": str(exc)}
        return form_error("loras/_train_form.html", context, target="#train-form", status=503)
    lora.job_id = job.id
    db.session.commit()
    if secrets:
        try:
            current_app.redis.setex(SECRET_KEY.format(job.id), SECRET_TTL, json.dumps(secrets))
        except RedisError:
            pass  # the queue just worked; if Redis went away the job fails on its own
    return redirect_page(make_response("", 204), url_for("loras.show", lora_id=lora.id))

