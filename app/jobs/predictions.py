"""Driving one Replicate prediction from inside a job: create once, poll, report, cancel."""
from __future__ import annotations

import time

from flask import current_app

from app.jobs.runner import JobCanceled, JobFailed, JobRun
from app.replicate.client import NotFoundError, Prediction, ReplicateClient

POLL_FIRST, POLL_MAX = 0.5, 2.0
# Share of the progress bar each phase takes: booting, running the model, downloading outputs.
BOOT_SHARE, RUN_SHARE = 5, 85


def client_from_config(config=None) -> ReplicateClient:
    config = config or current_app.config
    return ReplicateClient(
        config["REPLICATE_API_TOKEN"],
        config["REPLICATE_API_BASE"],
        download_hosts=set(config["REPLICATE_DOWNLOAD_HOSTS"]) or None,
        allow_http_downloads=config["REPLICATE_ALLOW_HTTP_DOWNLOADS"],
    )


def follow_prediction(client: ReplicateClient, run: JobRun, model_ref: str, model_input: dict,
                      *, sleep=time.sleep) -> Prediction:
    """Return the finished prediction; reuse the job's stored prediction when it can still succeed."""
    prediction = _resume(client, run.job.prediction_id)
    if prediction is None:
        run.check_canceled()
        run.progress(1, "Sending the request to Replicate")
        prediction = client.create_prediction(model_ref, model_input)
        run.set_prediction(prediction.id)
    interval = POLL_FIRST
    while not prediction.done:
        if run.cancel_requested():
            client.cancel_prediction(prediction.id)
            raise JobCanceled()
        run.progress(*_progress_of(prediction))
        sleep(interval)
        interval = min(interval * 1.3, POLL_MAX)
        prediction = client.get_prediction(prediction.id)
    if prediction.status == "canceled":
        raise JobCanceled()
    if prediction.status == "failed":
        raise JobFailed(f"The model failed on Replicate: {prediction.error or 'no reason given'}")
    run.progress(BOOT_SHARE + RUN_SHARE, "Downloading the results")
    return prediction


def _resume(client: ReplicateClient, prediction_id: str | None) -> Prediction | None:
    if not prediction_id:
        return None
    try:
        prediction = client.get_prediction(prediction_id)
    except NotFoundError:
        return None
    # A failed or expired prediction cannot give results; only then is a new one paid for.
    if prediction.status in ("failed", "canceled") or prediction.data_removed:
        return None
    return prediction


def _progress_of(prediction: Prediction) -> tuple[int, str]:
    if prediction.status == "starting":
        return BOOT_SHARE // 2, "Waiting for the model to start on Replicate"
    percent = prediction.progress
    if percent is None:
        return BOOT_SHARE, "Running on Replicate"
    return BOOT_SHARE + percent * RUN_SHARE // 100, f"Running on Replicate: {percent}%"
