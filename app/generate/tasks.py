"""The text-to-image job: one Replicate prediction, its outputs saved as Generation rows."""
from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import current_app

from app.gallery import save_generation
from app.jobs.predictions import follow_prediction
from app.replicate.catalog import client_from_config
from app.jobs.runner import JobFailed, job_run
from app.replicate.client import ReplicateClient, output_urls


def run_generation(job_id: str) -> None:
    """The ``generate.image`` job: one prediction, every output kept as a gallery image.

    params: ``model`` (ref), ``input`` (the validated input, seed included), ``files`` ({input name:
    upload path under DATA_DIR}, sent as data URIs or through the files API). result:
    ``generations`` (Generation ids in output order); message "N images". Fails with a message when
    the model returns no image, or with Replicate's message when a call fails.
    """
    with job_run(job_id) as run:
        job = run.job
        model_ref, model_input = job.params["model"], dict(job.params["input"])
        with client_from_config() as client:
            model_input.update(_file_inputs(client, job.params.get("files", {})))
            prediction = follow_prediction(client, run, model_ref, model_input)
            urls = output_urls(prediction.output)
            if not urls:
                raise JobFailed("The model finished but returned no images.")
            ids = []
            for index, url in enumerate(urls):
                run.progress(90 + 10 * index // len(urls), f"Downloading image {index + 1} of {len(urls)}")
                ids.append(save_generation(client, url, job, model_ref, job.params["input"], index).id)
        job.result = {"generations": ids}
        job.message = f"{len(ids)} image{'s' if len(ids) != 1 else ''}"


def _file_inputs(client: ReplicateClient, files: dict[str, str]) -> dict[str, str]:
    """Uploaded inputs are kept in the data folder; send each as a data URI or through the files API."""
    values = {}
    root = Path(current_app.config["DATA_DIR"])
    for field, relpath in files.items():
        path = root / relpath
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        values[field] = client.file_input(path.read_bytes(), content_type, path.name)
    return values
