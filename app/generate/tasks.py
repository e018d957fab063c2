"""The generate job: one Replicate prediction, and every output it returns kept — images in the
gallery, text and other files (video, audio, archives) as `OutputFile` rows — whatever its shape."""
from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import current_app

from app.atomic import storage_error_message
from app.canvas import canvas_png
from app.extensions import db
from app.gallery import Generation, OutputFile, store_generation, store_output_file, store_output_text
from app.jobs.predictions import follow_prediction
from app.jobs.runner import JobFailed, job_run
from app.replicate.catalog import client_from_config, model_schema
from app.replicate.client import InputError, ReplicateClient, ReplicateError, parse_output
from app.replicate.inputs import SECRETS_GONE, forget_secrets, stashed_secrets
from app.replicate.schema import output_schema


def run_generation(job_id: str) -> None:
    """The ``generate.image`` job.

    params: ``model`` (ref); ``input`` (the validated input without files and secrets, seed
    included); ``files`` ({input name: {"many": bool, "items": [{"path": under DATA_DIR} |
    {"url": link} | {"canvas": id}, …]}}, sent in order as data URIs or through the files API; older
    jobs hold {input name: upload path}); ``secrets`` (the key of the secret inputs waiting in Redis,
    see app.replicate.inputs) with ``secret_names``.
    result: ``generations`` (Generation ids in output order), ``outputs`` (OutputFile ids: text and
    non-image files), ``problems`` (a sentence per output that could not be kept). Fails with the
    reasons when nothing could be kept; with ``invalid_fields`` ({input: reason}) when the model
    refused an input.
    """
    with job_run(job_id) as run:
        job = run.job
        params = job.params
        model_ref, public_input = params["model"], dict(params["input"])
        model_input = dict(public_input)
        secrets = stashed_secrets(current_app.redis, params.get("secrets"))
        if secrets is None and not job.prediction_id:
            raise JobFailed(SECRETS_GONE.format(names=", ".join(params.get("secret_names") or ["…"])))
        model_input.update(secrets or {})
        with client_from_config() as client:
            try:
                model_input.update(_file_inputs(client, params.get("files", {}), job.user_id))
                prediction = follow_prediction(client, run, model_ref, model_input)
            except InputError as exc:
                # The model refused an input the form let through: say which, by its field.
                raise JobFailed(exc.message, result={"invalid_fields": exc.fields}) from None
            forget_secrets(current_app.redis, params.get("secrets"))
            job.result = _keep_outputs(run, client, prediction.output, model_ref, public_input)
        job.message = _summary(job.result)


def _keep_outputs(run, client: ReplicateClient, output, model_ref: str, public_input: dict) -> dict:
    job = run.job
    _forget_earlier_outputs(job)  # a retry keeps the outputs once
    try:
        shape = output_schema(model_schema(job.user_id, model_ref)[0])
    except (LookupError, ReplicateError):
        shape = {}
    parsed = parse_output(output, shape)
    generations, others, problems = [], [], []
    for index, item in enumerate(parsed.files):
        run.progress(90 + 10 * index // len(parsed.files), f"Saving output {index + 1} of {len(parsed.files)}")
        name = f"Output {item.key or index + 1}" if len(parsed.files) > 1 or item.key else "The output"
        try:
            fetched = client.fetch_output(item.value)
            if fetched.kind == "image":
                generations.append(store_generation(fetched.data, job, model_ref, public_input, index).id)
            else:
                others.append(store_output_file(fetched, job, model_ref, index, item.key).id)
        except ReplicateError as exc:
            problems.append(f"{name} could not be kept: {exc.message}")
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow could identify but not convert it
            db.session.rollback()
            full = storage_error_message(exc)
            if full:  # every further output would fail alike; say it plainly, without OS error text
                raise JobFailed(f"{full} Replicate keeps the outputs for about an hour: Retry once there is "
                                "space.") from exc
            problems.append(f"{name} could not be kept: {type(exc).__name__}: {exc}"[:500])
    if parsed.text:
        others.append(store_output_text(parsed.text, job, model_ref).id)
    if parsed.dropped:
        problems.append(f"{parsed.dropped} more output values were not read: the output is larger or more deeply "
                        "nested than Tessera reads.")
    if not generations and not others:
        if problems:
            raise JobFailed("Nothing the model returned could be kept. " + " ".join(problems)
                            + " Retry to fetch it again (Replicate keeps outputs for about an hour).")
        raise JobFailed("The model finished but returned nothing.")
    return {"generations": generations, "outputs": others, "problems": problems}


def _summary(result: dict) -> str:
    rows = db.session.scalars(db.select(OutputFile).where(OutputFile.id.in_(result.get("outputs") or []))).all()
    counts: dict[str, int] = {}
    images = len(result.get("generations") or [])
    if images:
        counts["image"] = images
    for row in rows:
        counts[row.kind] = counts.get(row.kind, 0) + 1
    parts = [kind if kind == "text" else f"{count} {kind if kind != 'file' else 'file'}{'s' if count != 1 else ''}"
             for kind, count in counts.items()]
    return ", ".join(parts) or "Done"


def _forget_earlier_outputs(job) -> None:
    db.session.execute(db.delete(Generation).where(Generation.job_id == job.id))
    db.session.execute(db.delete(OutputFile).where(OutputFile.job_id == job.id))
    db.session.commit()


def _file_inputs(client: ReplicateClient, files: dict, user_id: int) -> dict:
    """Each file input's value(s): files kept under DATA_DIR (uploads, gallery images) and canvas
    pictures go as data URIs or through the files API, links as they are, in the user's order."""
    values = {}
    root = Path(current_app.config["DATA_DIR"])
    for name, spec in files.items():
        if isinstance(spec, str):  # jobs queued before several files per input
            spec = {"many": False, "items": [{"path": spec}]}
        sent = []
        for position, item in enumerate(spec.get("items") or []):
            if "url" in item:
                sent.append(item["url"])
            elif "canvas" in item:
                try:
                    data = canvas_png(user_id, int(item["canvas"]))
                except (LookupError, ValueError) as exc:
                    raise JobFailed(str(exc)) from None
                sent.append(client.file_input(data, "image/png", f"canvas-{item['canvas']}.png"))
            else:
                path = root / item["path"]
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    raise JobFailed(f"An input image of “{name}” is gone from the data folder (it was deleted): "
                                    "choose it again.") from None
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                sent.append(client.file_input(data, content_type, f"{name}-{position}{path.suffix}"))
        if sent:
            values[name] = sent if spec.get("many") else sent[0]
    return values
