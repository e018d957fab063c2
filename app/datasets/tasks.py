"""Dataset jobs: scan and index a folder, make thumbnails, auto-caption through Replicate, export."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from flask import current_app
from PIL import Image

from app import imaging

from app.datasets import index
from app.datasets.health import known_problems
from app.datasets.export import kohya_metadata_json, write_kohya_folder_zip, write_training_zip
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused, roots_for_user
from app.datasets.scan import ScanError, relative_message, scan_folder
from app.datasets.thumbnails import make_thumbnail, thumb_relpath
from app.datasets.zipimport import ZipRefused, extract_dataset_zip
from app.extensions import db
from app.models import User
from app.jobs.predictions import follow_prediction
from app.replicate.catalog import client_from_config
from app.jobs.runner import JobFailed, JobRun, enqueue_job, job_run
from app.replicate.client import ReplicateError

THUMB_BATCH = 100  # rows marked ready at a time, so the grid fills in while the job runs
CAPTION_MAX_SIDE = 768  # captioners look at 384 px or so; larger only costs upload time
_CAPTION_PREFIX = re.compile(r"^\s*caption\s*:\s*", re.IGNORECASE)


def owner_roots(dataset: Dataset) -> list[Path]:
    """The dataset roots of the dataset's owner (their `{user}` folders and the shared ones)."""
    owner = db.session.get(User, dataset.user_id)
    return [root.path for root in roots_for_user(current_app.config["DATASET_ROOTS"], owner.username)]


def _dataset(run: JobRun) -> tuple[Dataset, Path]:
    dataset = db.session.get(Dataset, run.job.params["dataset_id"])
    if dataset is None or dataset.user_id != run.job.user_id:
        raise JobFailed("The dataset no longer exists.")
    try:
        return dataset, index.dataset_root(dataset, owner_roots(dataset))
    except PathRefused as exc:
        raise JobFailed(exc.message) from exc


def enqueue_scan(dataset: Dataset, *, full: bool = False):
    """Scan the dataset's folder; `full` (the Rescan button) re-reads every caption into the index,
    so whatever went wrong between the files and the index is repaired."""
    return enqueue_job(run_scan, user_id=dataset.user_id, kind="datasets.scan", title=f"Scan {dataset.name}",
                       params={"dataset_id": dataset.id, "full": full})


def follow_with_scan(run, dataset: Dataset) -> None:
    """Scan the dataset after a job that wrote files into it (unpack, crops), and name the scan in
    the job's result (`scan_job`): the page showing the job follows the scan in its place
    (datasets/_job_result.html), so the grid fills when the scan ends, not at a reload."""
    scan = enqueue_scan(dataset)
    run.job.result = {**(run.job.result or {}), "scan_job": scan.id}


def run_scan(job_id: str) -> None:
    """The ``datasets.scan`` job: read the dataset's folder and bring the index in line with it.

    params: ``dataset_id``. result: ``dataset_id``, counts ``added``, ``changed``, ``removed``,
    ``captions``, and ``skipped`` (up to 50 [name, reason]). Queues ``datasets.thumbs`` when images
    lack thumbnails. Fails with a message when the dataset is gone or its folder is refused or unreadable.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)
        run.progress(1, "Listing files")

        def on_progress(done: int, total: int) -> None:
            if done % 50 == 0 or done == total:
                run.progress(2 + done * 93 // max(total, 1), f"Reading image {done:,} of {total:,}")
            if done % 500 == 0:
                run.check_canceled()

        try:
            known = index.known_state(dataset.id)
            if run.job.params.get("full"):  # without caption versions every caption is reported and stored
                known = {relpath: state[:2] for relpath, state in known.items()}
            result = scan_folder(root, known=known, workers=2, on_progress=on_progress,
                                 caption_encoding=(dataset.settings or {}).get("caption_encoding"))
        except ScanError as exc:
            raise JobFailed(str(exc)) from exc
        run.progress(96, "Saving the index")
        counts = index.apply_scan(dataset, result, full=bool(run.job.params.get("full")))
        run.job.result = {"dataset_id": dataset.id, **counts, "skipped": result.skipped[:50],
                          "skipped_total": len(result.skipped)}
        run.job.message = (f"{dataset.image_count:,} images: {counts['added']:,} new, {counts['changed']:,} changed, "
                           f"{counts['removed']:,} removed, {counts['captions']:,} captions updated")
        if result.skipped:
            run.job.message += f"; {len(result.skipped):,} skipped"
        if counts["repaired"]:
            run.job.message += f"; the tags of {counts['repaired']:,} images repaired"
        if index.images_needing_thumbnails(dataset.id):
            enqueue_job(run_thumbnails, user_id=dataset.user_id, kind="datasets.thumbs",
                        title=f"Thumbnails for {dataset.name}", params={"dataset_id": dataset.id})


def enqueue_import(dataset: Dataset, upload: Path):
    return enqueue_job(run_import_zip, user_id=dataset.user_id, kind="datasets.import", title=f"Unpack {dataset.name}",
                       params={"dataset_id": dataset.id, "upload": str(upload)})


def uploads_in_use(user_id: int, data_dir: Path, *, besides: int | None = None) -> int:
    """Bytes in the user's unpacked zips (their managed datasets' folders), for the quota."""
    total = 0
    for dataset_id in db.session.scalars(db.select(Dataset.id).where(Dataset.user_id == user_id, Dataset.managed)):
        if dataset_id == besides:
            continue
        for folder, _, files in os.walk(index.managed_folder(data_dir, dataset_id)):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
    return total


def run_import_zip(job_id: str) -> None:
    """Unpack an uploaded zip into the dataset's own folder (see zipimport), then scan it.

    The upload is a file under DATA_DIR (the request saved it); it is deleted whatever happens.
    """
    with job_run(job_id) as run:
        dataset = db.session.get(Dataset, run.job.params["dataset_id"])
        upload = Path(run.job.params["upload"])
        try:
            if dataset is None or dataset.user_id != run.job.user_id or not dataset.managed:
                raise JobFailed("The dataset no longer exists.")
            if not upload.is_file():
                raise JobFailed("The uploaded zip is gone (it is removed once tried); upload it again.")
            data_dir = Path(current_app.config["DATA_DIR"])
            quota = current_app.config["USER_QUOTA_BYTES"]
            quota_left = quota - uploads_in_use(dataset.user_id, data_dir, besides=dataset.id) if quota else None
            folder = index.managed_folder(data_dir, dataset.id)
            shutil.rmtree(folder, ignore_errors=True)  # a retry starts over

            def on_progress(done: int, total: int) -> None:
                if done % 50 == 0 or done == total:
                    run.progress(done * 95 // max(total, 1), f"Unpacking file {done:,} of {total:,}")
                if done % 500 == 0:
                    run.check_canceled()

            try:
                result = extract_dataset_zip(upload, folder, quota_left=quota_left, on_progress=on_progress)
            except ZipRefused as exc:
                raise JobFailed(exc.message) from exc
        finally:
            upload.unlink(missing_ok=True)
        run.job.result = {"dataset_id": dataset.id, "skipped": result.skipped[:50], "skipped_total": len(result.skipped)}
        run.job.message = f"Unpacked {len(result.images):,} images and {len(result.captions):,} captions"
        if result.skipped:
            run.job.message += f"; {len(result.skipped):,} files left out"
        follow_with_scan(run, dataset)


def run_thumbnails(job_id: str) -> None:
    """The ``datasets.thumbs`` job: make the grid's missing thumbnails, a batch of rows at a time.

    params: ``dataset_id``. result: ``dataset_id``. An image that cannot be read gets the reason on
    its row (shown in the grid and health) instead of failing the job.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)
        data_dir = Path(current_app.config["DATA_DIR"])
        by_hash: dict[str, list] = {}
        for row in index.images_needing_thumbnails(dataset.id):
            by_hash.setdefault(row.content_hash, []).append(row)
        # Identical files share one thumbnail, and one made earlier (another dataset) is reused.
        ready = [row.id for digest, rows in by_hash.items() if (data_dir / thumb_relpath(digest)).exists() for row in rows]
        todo = [rows for digest, rows in by_hash.items() if not (data_dir / thumb_relpath(digest)).exists()]
        index.mark_thumbnails_ready(ready)
        total, done, broken = len(todo), 0, {}

        def make(rows) -> None:
            first = rows[0]
            make_thumbnail(index.resolve_image(root, first.relpath), data_dir / thumb_relpath(first.content_hash))

        pending_ready: list[int] = []
        with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
            futures = {pool.submit(make, rows): rows for rows in todo}
            for future in as_completed(futures):
                rows = futures[future]
                try:
                    future.result()
                    pending_ready += [row.id for row in rows]
                # Pillow raises SyntaxError for some corrupt files; ValueError covers refused paths.
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                    reason = relative_message(str(getattr(exc, "message", exc)), root)
                    broken.update({row.id: f"Cannot make a thumbnail: {reason}" for row in rows})
                done += 1
                if len(pending_ready) >= THUMB_BATCH or done == total:
                    index.mark_thumbnails_ready(pending_ready)
                    pending_ready = []
                    run.progress(done * 100 // max(total, 1), f"{done:,} of {total:,} thumbnails")
                if done % THUMB_BATCH == 0 and run.cancel_requested():
                    for other in futures:
                        other.cancel()
                    index.mark_thumbnails_ready(pending_ready)
                    run.check_canceled()
        index.mark_images_broken(broken)
        run.job.result = {"dataset_id": dataset.id}
        run.job.message = f"{total:,} thumbnails made" + (f", {len(broken):,} images unreadable" if broken else "")


class _ImageShare:
    """Lets follow_prediction report into one image's share of a many-image job's progress bar."""

    def __init__(self, run: JobRun, number: int, total: int) -> None:
        self._run, self.job = run, run.job
        self._start, self._span = (number - 1) * 100 / total, 100 / total
        self._label = f"Image {number} of {total}"

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        self._run.progress(None if percent is None else int(self._start + percent * self._span / 100),
                           None if message is None else f"{self._label}: {message}")

    def set_prediction(self, prediction_id: str) -> None:
        self._run.set_prediction(prediction_id)

    def add_predict_time(self, seconds: float | None) -> None:
        self._run.add_predict_time(seconds)  # the job's total over all its images

    def cancel_requested(self) -> bool:
        return self._run.cancel_requested()

    def check_canceled(self) -> None:
        self._run.check_canceled()


def caption_text(output) -> str:
    """A captioner's output as one caption: lists (streamed tokens) joined, BLIP's "Caption: " cut."""
    text = "".join(str(part) for part in output) if isinstance(output, list) else str(output or "")
    return _CAPTION_PREFIX.sub("", text).strip()


def with_prefix_suffix(text: str, prefix: str, suffix: str) -> str:
    parts = [part for part in (prefix.strip().strip(","), text, suffix.strip().strip(",")) if part.strip()]
    return ", ".join(part.strip() for part in parts)


def _caption_input_image(path: Path) -> tuple[bytes, str]:
    with Image.open(path) as opened:
        # The shared conversion: upright, 16-bit scaled, transparency flattened onto white.
        image = imaging.prepare(opened, keep_alpha=False, rgb=True, draft=(CAPTION_MAX_SIDE, CAPTION_MAX_SIDE))
        image.thumbnail((CAPTION_MAX_SIDE, CAPTION_MAX_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return buffer.getvalue(), "image/jpeg"


def run_autocaption(job_id: str) -> None:
    """The ``datasets.caption`` job: one prediction per image, each caption kept as a suggestion
    (never written to the caption file until the user accepts it).

    params: ``dataset_id``, ``image_ids``, ``model`` (a captioning model ref), ``prefix``, ``suffix``.
    result: ``dataset_id``, ``captioned`` (ids done, so a retry resumes), ``failures`` ({relpath:
    reason}). Fails at once on a bad token or no credit (401/402), and when no image could be captioned.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)
        params = run.job.params
        done_ids = set(run.job.result.get("captioned", []))  # a retry skips what is already suggested
        image_ids = [i for i in params["image_ids"] if i not in done_ids]
        total, failures = len(params["image_ids"]), dict(run.job.result.get("failures", {}))

        with client_from_config() as client:
            for number, image_id in enumerate(image_ids, start=len(done_ids) + 1):
                run.check_canceled()
                image = db.session.get(DatasetImage, image_id)
                if image is None or image.dataset_id != dataset.id:
                    continue
                share = _ImageShare(run, number, total)
                try:
                    data, content_type = _caption_input_image(index.resolve_image(root, image.relpath))
                    model_input = {"image": client.file_input(data, content_type, "image.jpg")}
                    prediction = follow_prediction(client, share, params["model"], model_input)
                    text = caption_text(prediction.output)
                    if not text:
                        raise ValueError("the model returned an empty caption")
                    image.suggestion = with_prefix_suffix(text, params.get("prefix", ""), params.get("suffix", ""))
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, JobFailed) as exc:
                    failures[image.relpath] = getattr(exc, "message", None) or str(exc)
                except ReplicateError as exc:
                    if exc.status in (401, 402):
                        raise JobFailed(exc.message) from exc  # a bad token or no credit: no image would work
                    failures[image.relpath] = exc.message
                # One commit stores the suggestion and forgets the prediction, so a retry resumes here.
                run.job.prediction_id = None
                done_ids.add(image_id)
                run.job.result = {"dataset_id": dataset.id, "captioned": sorted(done_ids), "failures": failures}
                db.session.commit()
        suggested = len(done_ids) - len(failures)
        run.job.message = f"{suggested:,} caption suggestion{'s' if suggested != 1 else ''} ready to review"
        if failures:
            run.job.message += f"; {len(failures):,} failed"
        if failures and not suggested:
            raise JobFailed("No image could be captioned: " + "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3]))


EXPORT_FORMATS = {
    "training": "Zip for CivitAI / Replicate / ai-toolkit (images and .txt at the root)",
    "kohya": "Zip in kohya's folder layout (img/{repeats}_{trigger} {class}/)",
    "metadata": "kohya metadata JSON",
}


def run_export(job_id: str) -> None:
    """The ``datasets.export`` job: write the dataset as a trainer's zip or kohya metadata JSON.

    params: ``dataset_id``, ``format`` (a key of EXPORT_FORMATS), ``trigger``, ``max_side`` (pixels
    or None), ``sequential``, ``strip_escapes``, ``png_jpeg_only``, ``repeats`` and ``class_token``
    (kohya), ``image_ids`` (only these images; None: all), ``background`` ("#rrggbb" to flatten
    transparent images onto, or None). result: ``dataset_id``, ``download`` (DATA_DIR/exports/<job
    id>.zip or .json), ``filename`` (what the browser saves it as), ``skipped`` (up to 50 [name,
    reason]; excluded images among them), ``warnings`` (up to 50 [name, what was changed or is
    left]) and ``problems`` (what Health knows of the exported images, as sentences). The file
    appears only when complete. Fails with a message when nothing is readable or an option is refused.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)
        params = run.job.params
        items, left_out = index.export_items(dataset.id, root, params.get("image_ids"))
        if not items:
            raise JobFailed("There are no readable images to export.")
        data_dir = Path(current_app.config["DATA_DIR"])
        fmt = params["format"]
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.name).strip("-") or "dataset"
        ext = ".json" if fmt == "metadata" else ".zip"
        relpath = Path("exports") / f"{run.job.id}{ext}"
        dest = data_dir / relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        trigger = params.get("trigger") or None

        def on_progress(done: int, total: int) -> None:
            if done % 20 == 0 or done == total:
                run.progress(done * 99 // total, f"Exporting image {done:,} of {total:,}")
            if done % 200 == 0:
                run.check_canceled()

        options = {"max_side": params.get("max_side") or None, "rename_sequential": bool(params.get("sequential")),
                   "strip_escapes": bool(params.get("strip_escapes")), "png_jpeg_only": bool(params.get("png_jpeg_only")),
                   "background": _colour(params.get("background")), "on_progress": on_progress}
        try:
            warnings = []
            if fmt == "metadata":
                metadata = kohya_metadata_json(items, trigger=trigger, strip_escapes=options["strip_escapes"])
                tmp.write_text(json.dumps(metadata, ensure_ascii=False, indent=2), encoding="utf-8")
                written, skipped = len(metadata), []
            elif fmt == "kohya":
                if not trigger:
                    raise JobFailed("The kohya folder layout needs a trigger word.")
                result = write_kohya_folder_zip(items, tmp, int(params.get("repeats") or 10), trigger,
                                                params.get("class_token", ""), **options)
                written, skipped, warnings = len(result.images), result.skipped, result.warnings
            else:
                result = write_training_zip(items, tmp, trigger=trigger, **options)
                written, skipped, warnings = len(result.images), result.skipped, result.warnings
            os.replace(tmp, dest)
        except ValueError as exc:
            raise JobFailed(str(exc)) from exc
        finally:
            tmp.unlink(missing_ok=True)
        relative = [(_relative(root, name), why) for name, why in [*skipped, *warnings]]
        run.job.result = {"dataset_id": dataset.id, "download": relpath.as_posix(),
                          "filename": f"{safe_name}-{fmt}{ext}", "skipped": [*left_out, *relative[:len(skipped)]][:50],
                          "warnings": relative[len(skipped):][:50],
                          "problems": known_problems(dataset.id, [i for i in params.get("image_ids") or []] or None)}
        run.job.message = f"{written:,} images exported" + (
            f"; {len(left_out) + len(skipped):,} left out" if left_out or skipped else "") + (
            f"; {len(warnings):,} notes" if warnings else "")


def _colour(value: str | None) -> tuple[int, int, int] | None:
    """"#rrggbb" as an RGB triple; None for no colour (ValueError for a malformed one)."""
    if not value:
        return None
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        raise JobFailed(f"Not a colour: {value}")
    return tuple(int(value[i:i + 2], 16) for i in (1, 3, 5))


def _relative(root: Path, name: str) -> str:
    try:
        return Path(name).relative_to(root).as_posix()
    except ValueError:
        return Path(name).name
