"""Uploading a zip as a dataset: checked in the request, unpacked by a job.

The request reads only the zip's directory and a few bytes per image (`check_dataset_zip`), so a
bomb, a fake or an upload over the user's quota is refused at once with nothing written; the
unpacking itself runs in `run_import_zip`, whose status the dataset page polls.
"""
import shutil
import uuid
from pathlib import Path

from flask import current_app, flash, redirect, request, url_for
from flask_login import current_user

from app.datasets import bp, index
from app.datasets.models import Dataset
from app.datasets.routes import list_page, data_dir
from app.datasets.tasks import enqueue_import, uploads_in_use
from app.datasets.zipimport import ZipRefused, size_text, check_dataset_zip
from app.extensions import db
from app.jobs.runner import QueueUnavailable


def pending_upload_path() -> Path:
    """Where an upload waits for its job: inside the data folder, which every worker shares."""
    folder = data_dir() / "uploads" / "pending-zips"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}.zip"


@bp.post("/upload")
def upload_zip():
    upload = request.files.get("archive")
    if upload is None or not upload.filename:
        return list_page(422, zip_error="Choose a zip file to upload.")
    quota = current_app.config["USER_QUOTA_BYTES"]
    quota_left = quota - uploads_in_use(current_user.id, data_dir()) if quota else None
    try:
        planned = check_dataset_zip(upload.stream, quota_left=quota_left)
    except ZipRefused as exc:
        return list_page(422, zip_error=exc.message)
    name = request.form.get("name", "").strip() or Path(upload.filename).stem or "Uploaded dataset"
    target = pending_upload_path()
    upload.stream.seek(0)
    with open(target, "xb") as out:
        shutil.copyfileobj(upload.stream, out, 1 << 20)
    dataset = Dataset(user_id=current_user.id, name=name[:200], root="", managed=True, settings={})
    db.session.add(dataset)
    db.session.flush()
    dataset.root = str(index.managed_folder(data_dir(), dataset.id))
    db.session.commit()
    try:
        enqueue_import(dataset, target)
    except QueueUnavailable as exc:
        flash(str(exc), "error")
    note = f"Unpacking {len(planned.images):,} images and {len(planned.captions):,} captions"
    if quota_left is not None:
        note += f" ({size_text(max(quota_left, 0))} of your upload quota left before this one)"
    note += "."
    if planned.skipped:
        note += f" Leaving out {len(planned.skipped):,}: " + "; ".join(f"{n} ({why})" for n, why in planned.skipped[:5])
    flash(note, "info")
    return redirect(url_for("datasets.show", dataset_id=dataset.id), 303)
