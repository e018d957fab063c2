"""Dataset jobs that write or delete image files: crop to training buckets, empty the trash."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from PIL import Image

from app import imaging
from app.datasets import autocrop, buckets, index
from app.datasets.captions import CaptionConflict, CaptionWriteError
from app.datasets.captionwrite import write_caption
from app.datasets.models import Dataset, DatasetImage
from app.datasets.paths import PathRefused, resolve_within
from app.datasets.tasks import _dataset, follow_with_scan
from app.datasets.trash import empty_trash
from app.extensions import db
from app.jobs.runner import JobFailed, job_run

SKIPPED_SHOWN = 200  # reasons kept in the job's result (the count is exact)
# Scaling up to cover the bucket is what the trainer does anyway (kohya without --bucket_no_upscale);
# past 2× the crop is mostly invented pixels, so such images are skipped unless the user asks.
MAX_UPSCALE = 2.0


def crop_target_folder(root: Path, relpath: str, folder: str | None) -> Path:
    """Where the crop of image `relpath` goes: beside it, or under `<root>/<folder>/` mirroring its
    sub-folders. Raises PathRefused for a folder outside the dataset or through a symlink."""
    parent = PurePosixPath(relpath).parent
    if not folder:
        return resolve_within([root], str(parent)) if str(parent) != "." else Path(root)
    target = resolve_within([root], str(PurePosixPath(folder) / parent))
    # resolve_within resolves links; a link anywhere on the way would move the files elsewhere.
    probe = Path(root)
    for part in (PurePosixPath(folder) / parent).parts:
        probe = probe / part
        if probe.is_symlink():
            raise PathRefused(f"{folder} goes through a symbolic link; choose another folder")
    return target


def run_crop_buckets(job_id: str) -> None:
    """The ``datasets.crop`` job: crop each image of a scope to its training bucket, as new files.

    params: ``dataset_id``, ``image_ids``, ``trainer`` (a `buckets.TRAINERS` key), ``folder`` (None:
    beside each original; else a sub-folder of the dataset), ``upscale`` (also images needing more
    than `MAX_UPSCALE` to cover their bucket), ``exclude_originals``. Each crop is placed by `autocrop` (the face, else the
    subject), scaled to exactly the bucket's size and written with a copy of the caption; nothing is
    overwritten. result: ``dataset_id``, ``written``, ``skipped`` ([name, reason]), ``skipped_total``.
    A rescan follows, so the new images join the dataset.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)
        params = run.job.params
        trainer = params.get("trainer") if params.get("trainer") in buckets.TRAINERS else buckets.DEFAULT_TRAINER
        wanted = params.get("image_ids") or []
        rows = db.session.execute(db.select(DatasetImage.id, DatasetImage.relpath, DatasetImage.width,
                                            DatasetImage.height, DatasetImage.error, DatasetImage.caption,
                                            DatasetImage.excluded, DatasetImage.caption_relpath,
                                            DatasetImage.caption_problems)
                                  .where(DatasetImage.dataset_id == dataset.id, DatasetImage.id.in_(wanted or [-1]))
                                  .order_by(DatasetImage.relpath)).all()
        written, cropped_ids, skipped = [], [], []
        for n, row in enumerate(rows, 1):
            if n % 10 == 0:
                run.check_canceled()
            run.progress(n * 95 // max(len(rows), 1), f"Cropping image {n:,} of {len(rows):,}")
            reason = _crop_one(dataset, root, row, trainer, params.get("folder") or None, bool(params.get("upscale")))
            if isinstance(reason, str):
                skipped.append([row.relpath, reason])
            else:
                written.append(reason)
                cropped_ids.append(row.id)
        if params.get("exclude_originals") and cropped_ids:
            index.set_excluded(dataset.id, cropped_ids, True)
        run.job.result = {"dataset_id": dataset.id, "written": len(written), "skipped": skipped[:SKIPPED_SHOWN],
                          "skipped_total": len(skipped)}
        run.job.message = (f"Wrote {len(written):,} crop{'s' if len(written) != 1 else ''}"
                           + (f", {len(skipped):,} skipped" if skipped else "")
                           + ("; the originals are excluded from training" if params.get("exclude_originals") and cropped_ids else ""))
        if written:
            follow_with_scan(run, dataset)


def _crop_one(dataset: Dataset, root: Path, row, trainer: str, folder: str | None, upscale: bool) -> str | Path:
    """Crop one image; the new file's path, or why it was skipped (a sentence)."""
    if row.error or not row.width or not row.height:
        return f"cannot be read ({row.error or 'no size'})"
    if row.excluded:
        return "excluded from training"
    bucket = buckets.bucket_for(row.width, row.height, trainer)
    size = (bucket.width, bucket.height)
    if (row.width, row.height) == size:
        return f"already {bucket.label}, its bucket's size"
    keep = buckets.focus_crop(row.width, row.height, size)
    if not upscale and bucket.width / (keep[2] - keep[0]) > MAX_UPSCALE:
        return (f"far smaller than its bucket ({row.width}×{row.height} for {bucket.label}): scaling it up"
                f" {bucket.width / (keep[2] - keep[0]):.1f}× adds no detail (tick “also upscale” to crop it anyway)")
    try:
        source = index.resolve_image(root, row.relpath)
        target_folder = crop_target_folder(root, row.relpath, folder)
        target_folder.mkdir(parents=True, exist_ok=True)
        proposal = autocrop.auto_crop(autocrop.analysis_for(source), size)
        new = buckets.crop_to_new_file(source, proposal.box, size=size, folder=target_folder, number=False)
    except FileExistsError:
        return f"a crop of it is there already ({bucket.label})"
    except PathRefused as exc:
        return exc.message
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return f"could not be cropped: {getattr(exc, 'strerror', None) or imaging.open_problem(exc)}"
    try:
        copy_caption(dataset, root, row, new)
    except CaptionWriteError as exc:
        raise JobFailed(f"Wrote {new.name}, but not its caption: {exc.message}") from exc
    return new


def copy_caption(dataset: Dataset, root: Path, row, new_image: Path) -> str | None:
    """Give a crop its original's caption, beside it with the dataset's caption extension.

    The caption is written as UTF-8 text, except one whose encoding is uncertain: its bytes are
    copied as they are, so the guess shown is never written (the crop gets the same question).
    Never overwrites: returns a sentence when a caption of that name was there already (kept),
    else None. Raises CaptionWriteError when it cannot be written.
    """
    if row.caption is None:
        return None
    target = new_image.with_suffix(dataset.caption_ext or ".txt")
    try:
        if "encoding_uncertain" in (row.caption_problems or "") and row.caption_relpath:
            data = resolve_within([root], row.caption_relpath).read_bytes()
            with open(target, "xb") as out:  # "x": never over an existing file
                out.write(data)
        else:
            write_caption(target, row.caption, expected_version=None)
    except (CaptionConflict, FileExistsError):
        return f"a caption named {target.name} was there already and is kept"
    except (OSError, PathRefused) as exc:
        if isinstance(exc, CaptionWriteError):
            raise
        raise CaptionWriteError(f"{target.name}: {getattr(exc, 'message', None) or exc}") from exc
    return None


def run_empty_trash(job_id: str) -> None:
    """The ``datasets.empty_trash`` job: delete for good the trash entries up to ``through``.

    params: ``dataset_id``, ``through`` (the newest entry the user saw). result: ``dataset_id``,
    ``deleted``, ``freed`` (bytes), ``skipped`` ([entry, reason]). Safe to run again.
    """
    with job_run(job_id) as run:
        dataset, root = _dataset(run)

        def on_progress(done: int, total: int) -> None:
            if done % 50 == 0 or done == total:
                run.progress(done * 99 // max(total, 1), f"Deleting item {done:,} of {total:,}")
                run.check_canceled()

        try:
            deleted, freed, failed = empty_trash(root, run.job.params.get("through") or None, on_progress=on_progress)
        except PathRefused as exc:
            raise JobFailed(exc.message) from exc
        run.job.result = {"dataset_id": dataset.id, "deleted": deleted, "freed": freed,
                          "skipped": [list(item) for item in failed[:SKIPPED_SHOWN]], "skipped_total": len(failed)}
        run.job.message = f"Deleted {deleted:,} item{'s' if deleted != 1 else ''} for good"
