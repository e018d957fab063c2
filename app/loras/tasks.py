"""LoRA jobs: train one on Replicate (zip → upload → destination → training → weights), and a sample grid.

A training runs for tens of minutes, so its job does not hold a worker while Replicate works: each
run looks at the training once, records its progress, and defers itself (``run.defer``) to look again
after LORA_POLL_SECONDS (longer when webhooks are on, since a delivery wakes it earlier). The training
id is stored the moment Replicate answers the create; every later run, a Retry, or a restarted worker
polls that training and never creates a second one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import current_app

from app.datasets import Dataset, PathRefused, zip_items
from app.extensions import db
from app.gallery import save_generation
from app.jobs.predictions import WEBHOOK_EVENTS, follow_prediction, webhook_url
from app.jobs.runner import JobCanceled, JobFailed, JobRun, job_run
from app.loras.models import Lora
from app.loras.training import (
    TRAINER_FORMATS, WeightsError, build_training_zip, extract_weights, write_json, zip_captions,
)
from app.models import utcnow
from app.replicate.catalog import client_from_config
from app.replicate.client import OutputError, ReplicateClient, ReplicateError, TransientError, output_urls
from app.replicate.trainings import Training

# Shares of the job's progress bar: zip and upload, then the training, then the weights.
PREPARE_SHARE, TRAIN_SHARE = 10, 85
MAX_WEIGHTS_BYTES = 2 * 1024 ** 3
# Secret trainer inputs (hf_token) wait in Redis, never in a row or job params, until the create sends them.
SECRET_KEY = "tessera:lora-secret:{}"
SECRET_TTL = 24 * 3600


def lora_folder(data_dir: Path, lora_id: int) -> Path:
    return data_dir / "loras" / str(lora_id)


def _lora(run: JobRun) -> Lora:
    lora = db.session.get(Lora, run.job.params["lora_id"])
    if lora is None or lora.user_id != run.job.user_id:
        raise JobFailed("The LoRA was deleted.")
    return lora


def run_training(job_id: str) -> None:
    with job_run(job_id) as run:
        lora = _lora(run)
        if lora.status == Lora.READY:
            return
        data_dir = Path(current_app.config["DATA_DIR"])
        try:
            with client_from_config() as client:
                if not lora.training_id:
                    _start(run, lora, client, data_dir)
                training = client.get_training(lora.training_id)
                _record(run, lora, training)
                if not training.done:
                    if run.cancel_requested():
                        training = client.cancel_training(training.id)
                    else:
                        delay = current_app.config["LORA_POLL_SECONDS"]
                        if webhook_url(current_app.config):
                            delay = current_app.config["LORA_WEBHOOK_POLL_SECONDS"]
                        run.defer(delay)
                        return
                _finish(run, lora, client, training, data_dir)
        except JobCanceled:
            _end(lora, Lora.CANCELED)
            raise
        except JobFailed as exc:
            _end(lora, Lora.FAILED, str(exc))
            raise
        except ReplicateError as exc:
            _end(lora, Lora.FAILED, exc.message)
            raise JobFailed(exc.message) from exc


def _end(lora: Lora, status: str, error: str | None = None) -> None:
    db.session.rollback()
    lora.status, lora.error, lora.finished_at = status, error, utcnow()
    db.session.commit()


def _start(run: JobRun, lora: Lora, client: ReplicateClient, data_dir: Path) -> None:
    """Zip, upload, make sure the destination exists, create the training once; store its id at once."""
    params = run.job.params
    result = dict(run.job.result or {})
    if result.get("create_sent"):
        # A create was sent but its answer never stored (the worker died, or the connection broke):
        # find that training on Replicate rather than paying for a second one.
        found = _find_sent_training(client, result.get("upload_url"), lora.destination)
        if found is not None:
            _store_training(run, lora, found)
            return
        raise JobFailed("A training may have been created on Replicate, but Tessera cannot find it. Check "
                        "replicate.com/trainings; start a new training here only if none is running.")
    upload_url = result.get("upload_url")
    if not upload_url:
        zip_path = lora_folder(data_dir, lora.id) / "training.zip"
        _build_zip(run, lora, params, zip_path)
        run.check_canceled()
        run.progress(PREPARE_SHARE - 2, f"Uploading the training zip ({zip_path.stat().st_size / 1e6:,.1f} MB)")
        upload_url = client.upload_path(zip_path, f"{lora.name}.zip", "application/zip")["urls"]["get"]
        zip_path.unlink(missing_ok=True)  # the captions snapshot keeps what it held
        result["upload_url"] = upload_url
        run.job.result = result
        db.session.commit()
    run.check_canceled()
    run.progress(PREPARE_SHARE - 1, "Preparing the destination model on Replicate")
    owner, _, name = lora.destination.partition("/")
    if not owner:
        owner = client.get_account()["username"]
        lora.destination = f"{owner}/{name}"
    client.ensure_model(owner, name, description=f"LoRA trained by Tessera from {lora.dataset_name}")
    training_input = {**lora.training_input, "input_images": upload_url}
    secret_key = SECRET_KEY.format(run.job.id)
    secret = current_app.redis.get(secret_key)
    training_input.update(json.loads(secret) if secret else {})
    webhook = webhook_url(current_app.config)
    result["create_sent"] = True
    run.job.result = result
    db.session.commit()
    run.progress(PREPARE_SHARE, "Starting the training on Replicate")
    try:
        training = client.create_training(lora.trainer, lora.destination, training_input, webhook=webhook,
                                           webhook_events_filter=WEBHOOK_EVENTS if webhook else None)
    except TransientError:
        raise  # may exist: the next run looks for it (create_sent stays set)
    except ReplicateError:
        result["create_sent"] = False  # refused: nothing was created
        run.job.result = result
        db.session.commit()
        raise
    _store_training(run, lora, training)
    current_app.redis.delete(secret_key)


def _store_training(run: JobRun, lora: Lora, training: Training) -> None:
    lora.training_id, lora.status = training.id, Lora.TRAINING
    run.job.prediction_id = training.id  # webhook deliveries find the job by it
    run.job.result = {**(run.job.result or {}), "lora_id": lora.id, "training_id": training.id}
    db.session.commit()


def _find_sent_training(client: ReplicateClient, upload_url: str | None, destination: str) -> Training | None:
    if not upload_url:
        return None
    trainings, _ = client.list_trainings()
    for training in trainings:
        if training.input.get("input_images") == upload_url and training.raw.get("destination") in (None, destination):
            return training
    return None


def _build_zip(run: JobRun, lora: Lora, params: dict, zip_path: Path) -> None:
    dataset = db.session.get(Dataset, lora.dataset_id) if lora.dataset_id else None
    if dataset is None or dataset.user_id != run.job.user_id:
        raise JobFailed("The dataset this LoRA was to be trained on no longer exists.")
    try:
        items, formats = zip_items(dataset, current_app.config["DATASET_ROOTS"], params.get("image_ids"))
    except PathRefused as exc:
        raise JobFailed(exc.message) from exc
    if not items:
        raise JobFailed("There is no readable image to train on.")

    def on_progress(done: int, total: int) -> None:
        if done % 20 == 0 or done == total:
            run.progress(done * (PREPARE_SHARE - 3) // total, f"Zipping image {done:,} of {total:,}")
        if done % 200 == 0:
            run.check_canceled()

    trigger = lora.trigger if params.get("add_trigger", True) else None
    result = build_training_zip(items, zip_path, trigger=trigger, strip_escapes=bool(params.get("strip_escapes")),
                                convert_formats=bool(formats - TRAINER_FORMATS), on_progress=on_progress)
    if not result.images:
        raise JobFailed("No image could be read for the training zip: " +
                        "; ".join(f"{Path(p).name}: {why}" for p, why in result.skipped[:3]))
    snapshot = zip_path.with_name("captions.json")
    write_json(snapshot, zip_captions(zip_path))
    lora.captions_path = snapshot.relative_to(Path(current_app.config["DATA_DIR"])).as_posix()
    lora.image_count = len(result.images)
    db.session.commit()


def _record(run: JobRun, lora: Lora, training: Training) -> None:
    progress = training.progress
    lora.progress = {"step": progress.step, "total": progress.total, "loss": progress.loss,
                     "seconds_per_step": progress.seconds_per_step, "remaining": progress.remaining,
                     "losses": [[point.step, point.loss] for point in progress.losses][-2000:],
                     "status": training.status}
    if training.status == "starting":
        run.progress(PREPARE_SHARE, "Waiting for a GPU on Replicate")
    elif progress.percent is not None:
        parts = [f"Step {progress.step:,} of {progress.total:,}"]
        if progress.loss is not None:
            parts.append(f"loss {progress.loss:.3g}")
        if progress.rate_text:
            parts.append(progress.rate_text)
        if progress.remaining:
            parts.append(f"about {progress.remaining} left")
        run.progress(PREPARE_SHARE + progress.percent * TRAIN_SHARE // 100, "Training: " + ", ".join(parts))
    else:
        run.progress(PREPARE_SHARE + 1, "Training on Replicate (preparing the images)")
    db.session.commit()


def _finish(run: JobRun, lora: Lora, client: ReplicateClient, training: Training, data_dir: Path) -> None:
    if training.status == "canceled":
        raise JobCanceled()
    if training.status == "failed":
        raise JobFailed(f"The training failed on Replicate: {training.error or 'no reason given'}")
    version = training.output_version
    if not version or ":" not in version:
        raise JobFailed("The training succeeded but Replicate did not say which model version it made.")
    model, _, version_id = version.partition(":")
    lora.version = version
    lora.reference = f"{model}/{version_id}"
    lora.weights_url = training.weights_url
    lora.status = Lora.DOWNLOADING
    db.session.commit()
    run.progress(PREPARE_SHARE + TRAIN_SHARE, "Downloading the weights")
    if lora.weights_url:
        try:
            download_weights(client, lora, data_dir)
        except (OutputError, WeightsError) as exc:
            # The LoRA works on Replicate through its version; the local copy is a keepsake.
            lora.error = f"The weights could not be kept: {getattr(exc, 'message', None) or exc}"
    lora.status, lora.finished_at = Lora.READY, utcnow()
    run.job.message = f"Trained {lora.name}: {lora.version}"
    db.session.commit()


def download_weights(client: ReplicateClient, lora: Lora, data_dir: Path) -> None:
    """Download the trainer's output and keep the .safetensors inside under the data folder.
    Raises OutputError (expired, refused host) or WeightsError (no .safetensors inside)."""
    folder = lora_folder(data_dir, lora.id)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "weights-download"
    try:
        client.download_to_file(lora.weights_url, archive, max_bytes=MAX_WEIGHTS_BYTES)
        dest = folder / "lora.safetensors"
        lora.weights_size = extract_weights(archive, dest)
    finally:
        archive.unlink(missing_ok=True)
    lora.weights_path = dest.relative_to(data_dir).as_posix()
    lora.error = None


# --- sample grid ----------------------------------------------------------------------------------

SAMPLE_SCALES = (0.0, 0.5, 0.8, 1.0)


class _Share:
    """Reports one prediction's progress into its share of a many-prediction job."""

    def __init__(self, run: JobRun, number: int, total: int) -> None:
        self._run, self.job = run, run.job
        self._start, self._span, self._label = (number - 1) * 100 / total, 100 / total, f"Image {number} of {total}"

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        self._run.progress(None if percent is None else int(self._start + percent * self._span / 100),
                           None if message is None else f"{self._label}: {message}")

    def set_prediction(self, prediction_id: str) -> None:
        self._run.set_prediction(prediction_id)

    def cancel_requested(self) -> bool:
        return self._run.cancel_requested()

    def add_predict_time(self, seconds) -> None:
        self._run.add_predict_time(seconds)

    def check_canceled(self) -> None:
        self._run.check_canceled()


def run_samples(job_id: str) -> None:
    """The same prompt and seed at each LoRA scale; result {"generations": [ids], "scales": [...]}."""
    with job_run(job_id) as run:
        lora = _lora(run)
        params = run.job.params
        done: dict[str, int] = dict((run.job.result or {}).get("by_scale", {}))
        scales = params["scales"]
        with client_from_config() as client:
            for number, scale in enumerate(scales, start=1):
                key = f"{scale:g}"
                if key in done:
                    continue
                run.check_canceled()
                model_input: dict[str, Any] = {**params["input"], "lora_weights": lora.reference, "lora_scale": scale}
                prediction = follow_prediction(client, _Share(run, number, len(scales)), params["model"], model_input)
                urls = output_urls(prediction.output)
                if not urls:
                    raise JobFailed("The model finished but returned no image.")
                loras = [{"id": lora.id, "name": lora.name, "reference": lora.reference, "scale": scale, "slot": 0}]
                generation = save_generation(client, urls[0], run.job, params["model"], model_input, number - 1,
                                             loras=loras)
                done[key] = generation.id
                run.job.prediction_id = None
                run.job.result = {"lora_id": lora.id, "by_scale": done,
                                  "generations": [done[f"{s:g}"] for s in scales if f"{s:g}" in done],
                                  "scales": scales}
                db.session.commit()
        run.job.message = f"Sample grid of {lora.name} at scales " + ", ".join(f"{s:g}" for s in scales)
