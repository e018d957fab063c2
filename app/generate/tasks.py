"""The text-to-image job: one Replicate prediction, its outputs saved as Generation rows."""
from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import current_app

from app.extensions import db
from app.generate.models import Generation
from app.generate.outputs import parameters_text, save_png
from app.jobs.predictions import client_from_config, follow_prediction
from app.jobs.runner import JobFailed, job_run
from app.replicate.client import ReplicateClient, output_urls


def run_generation(job_id: str) -> None:
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


def save_generation(client: ReplicateClient, url: str, job, model_ref: str, request_input: dict, index: int,
                    *, in_gallery: bool = True) -> Generation:
    data, _format = client.download_image(url)
    relpath = Path("outputs") / job.created_at.strftime("%Y/%m") / f"{job.id}-{index}.png"
    dest = Path(current_app.config["DATA_DIR"]) / relpath
    size = save_png(data, dest, lambda size: parameters_text(model_ref, request_input, size))
    seed = request_input.get("seed")
    generation = Generation(
        user_id=job.user_id, job_id=job.id, model_ref=model_ref, prompt=str(request_input.get("prompt", "")),
        params=request_input, seed=int(seed) if isinstance(seed, int) else None, output_index=index,
        path=relpath.as_posix(), width=size[0], height=size[1], in_gallery=in_gallery,
    )
    db.session.add(generation)
    db.session.commit()
    return generation


def _file_inputs(client: ReplicateClient, files: dict[str, str]) -> dict[str, str]:
    """Uploaded inputs are kept in the data folder; send each as a data URI or through the files API."""
    values = {}
    root = Path(current_app.config["DATA_DIR"])
    for field, relpath in files.items():
        path = root / relpath
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        values[field] = client.file_input(path.read_bytes(), content_type, path.name)
    return values
