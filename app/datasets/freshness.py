"""Noticing captions and images changed outside Tessera (a text editor, a WD14 script) between sessions.

Opening a dataset's page queues an incremental scan (``datasets.check``), at most one per
`CHECK_EVERY` per dataset: it walks the folder and compares each file's size and mtime with what
the index stored when it last read it (`scan.scan_folder`), so only files that moved are read
again, their tags and the tag counts following. At 100,000 images that is one directory walk in
a worker, never in the request. The editor reads its image's caption on every open as well
(`history.refresh_caption`). The Rescan button reads every caption whatever the clocks say.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.datasets.models import Dataset
from app.datasets.tasks import run_scan
from app.extensions import db
from app.jobs.runner import QueueUnavailable, enqueue_job
from app.models import Job, utcnow

CHECK_EVERY = timedelta(seconds=30)  # how often opening a dataset looks for files changed elsewhere


def check_for_changes(dataset: Dataset) -> Job | None:
    """Queue a ``datasets.check`` job for `dataset` if its last scan is older than `CHECK_EVERY` and
    none is queued or running; returns the job, or None. Never raises for a missing queue (the
    page then shows what the index has)."""
    if dataset.scanned_at is None or utcnow() - dataset.scanned_at < CHECK_EVERY:
        return None
    scans = db.session.scalars(select(Job).where(Job.user_id == dataset.user_id, Job.status.not_in(Job.ENDED),
                                                 Job.kind.in_(("datasets.scan", "datasets.check"))))
    if any(job.params.get("dataset_id") == dataset.id for job in scans):
        return None
    try:
        return enqueue_job(run_scan, user_id=dataset.user_id, kind="datasets.check",
                           title=f"Check {dataset.name} for changes on disk", params={"dataset_id": dataset.id},
                           interactive=True)  # the open page waits on it
    except QueueUnavailable:
        return None
