"""Enqueueing jobs and running them: the bridge between RQ and the Job table.

Job functions take the job id, open `job_run(job_id)` and report through it; the Job row is the
single source of truth the status partial reads, so polling costs one indexed SELECT.
"""
from __future__ import annotations

import logging
import os
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from flask import current_app
from redis.exceptions import RedisError
from rq import Callback
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from app.extensions import db
from app.models import Job, utcnow

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=5)
WORKER_LOST_MESSAGE = (
    "The worker stopped while running this job (it crashed or was restarted). "
    "Retry to continue: a Replicate prediction that was already started is reused, not paid for twice."
)


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached; nothing was queued."""


class JobCanceled(Exception):
    """Raised inside a job function when the user asked to cancel."""


class JobFailed(Exception):
    """Raised inside a job function with a message meant for the user."""


def enqueue_job(*, user_id: int, kind: str, title: str, task: str, params: dict | None = None,
                timeout: int = 3600) -> Job:
    job = Job(id=uuid.uuid4().hex, user_id=user_id, kind=kind, title=title[:200], task=task,
              params=params or {}, result={})
    db.session.add(job)
    # The row must exist before a worker can pick the job up.
    db.session.commit()
    _push(job, timeout)
    return job


def retry_job(job: Job, timeout: int = 3600) -> None:
    """Re-run an ended job under the same id; its stored prediction id is kept on purpose."""
    job.status, job.progress, job.error, job.message = Job.QUEUED, 0, None, "Queued again"
    job.cancel_requested = False
    job.started_at = job.finished_at = job.heartbeat_at = None
    db.session.commit()
    try:
        RQJob.fetch(job.id, connection=current_app.redis).delete()
    except NoSuchJobError:
        pass
    except RedisError:
        pass  # _push reports the unreachable queue
    _push(job, timeout)


def _push(job: Job, timeout: int) -> None:
    try:
        current_app.task_queue.enqueue(
            job.task, job.id, job_id=job.id, job_timeout=timeout, result_ttl=86400, failure_ttl=7 * 86400,
            on_failure=Callback(mark_failed_from_rq), on_stopped=Callback(mark_stopped_from_rq),
        )
    except RedisError as exc:
        job.status, job.error, job.finished_at = Job.FAILED, (
            "The job queue is not reachable (Redis), so nothing was queued. Start Tessera with "
            "`tessera up`, or check REDIS_URL."), utcnow()
        db.session.commit()
        raise QueueUnavailable(job.error) from exc


def cancel_job(job: Job) -> None:
    """Queued jobs are dropped at once; a running job sees the flag at its next poll."""
    if job.ended:
        return
    if job.status == Job.QUEUED:
        try:
            RQJob.fetch(job.id, connection=current_app.redis).cancel()
        except (NoSuchJobError, RedisError):
            pass
        _end(job, Job.CANCELED, message="Canceled before it started")
        return
    job.cancel_requested = True
    job.message = "Canceling…"
    db.session.commit()


def _end(job: Job, status: str, *, message: str = "", error: str | None = None) -> None:
    job.status, job.finished_at = status, utcnow()
    if message:
        job.message = message
    if status == Job.SUCCEEDED:
        job.progress = 100
    job.error = error
    db.session.commit()


def is_stale(job, stale_after: timedelta | None = None) -> bool:
    """An unfinished job whose worker has not been heard from for too long (works on rows and snapshots)."""
    if job.status in Job.ENDED:
        return False
    stale_after = stale_after or timedelta(seconds=current_app.config.get("JOB_STALE_SECONDS", 90))
    return utcnow() - (job.heartbeat_at or job.started_at or job.created_at) > stale_after


def reconcile(job: Job) -> None:
    """Mark a job failed when the worker that held it is gone, so nothing shows 'running' forever."""
    if not is_stale(job):
        return
    if job.status == Job.RUNNING:
        _end(job, Job.FAILED, error=job.error or WORKER_LOST_MESSAGE)
        return
    # Queued for long is fine while Redis still holds the job; one Redis forgot will never start.
    try:
        RQJob.fetch(job.id, connection=current_app.redis)
    except NoSuchJobError:
        _end(job, Job.FAILED, error="The job was lost from the queue (Redis was reset?). Retry it.")
    except RedisError:
        pass  # can't tell; the page shows the last known state


def reconcile_running(user_id: int | None = None) -> None:
    query = db.select(Job).where(Job.status.in_([Job.QUEUED, Job.RUNNING]))
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    for job in db.session.scalars(query):
        reconcile(job)


# --- inside the worker -----------------------------------------------------------------------


class JobRun:
    """What a job function holds while it works: progress, heartbeat, cancel checks."""

    def __init__(self, job: Job):
        self.job = job
        self._last_beat = utcnow()

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        changed = False
        if percent is not None and int(percent) != self.job.progress:
            self.job.progress = max(0, min(100, int(percent)))
            changed = True
        if message is not None and message != self.job.message:
            self.job.message = message
            changed = True
        now = utcnow()
        if changed or now - self._last_beat >= HEARTBEAT_EVERY:
            self.job.heartbeat_at = self._last_beat = now
            db.session.commit()

    def set_prediction(self, prediction_id: str) -> None:
        self.job.prediction_id = prediction_id
        db.session.commit()

    def cancel_requested(self) -> bool:
        db.session.refresh(self.job, ["cancel_requested"])
        return self.job.cancel_requested

    def check_canceled(self) -> None:
        if self.cancel_requested():
            raise JobCanceled()


@contextmanager
def job_run(job_id: str) -> Iterator[JobRun]:
    """Run the body as the job: running → succeeded, canceled, or failed with a user-facing error."""
    # A forked work-horse must not share the parent's pooled database connections.
    if os.getpid() != _engine_pid.get("pid"):
        db.engine.dispose(close=False)
        _engine_pid["pid"] = os.getpid()
    job = db.session.get(Job, job_id)
    if job is None:
        raise LookupError(f"No job row {job_id}")
    if job.ended:
        return
    job.status, job.started_at, job.heartbeat_at = Job.RUNNING, utcnow(), utcnow()
    job.attempts += 1
    job.message = "Starting"
    db.session.commit()
    run = JobRun(job)
    try:
        yield run
    except JobCanceled:
        db.session.rollback()
        _end(job, Job.CANCELED, message="Canceled")
        return
    except JobFailed as exc:
        db.session.rollback()
        _end(job, Job.FAILED, error=str(exc))
        return
    except Exception as exc:
        db.session.rollback()
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        _end(job, Job.FAILED, error=message)
        raise
    if not job.ended:
        _end(job, Job.SUCCEEDED, message=job.message if job.message != "Starting" else "Done")


_engine_pid: dict[str, int] = {}


def mark_failed_from_rq(rq_job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: also runs for abandoned jobs (a dead worker) and timeouts."""
    job = db.session.get(Job, rq_job.id)
    if job is None or job.ended:
        return
    reason = WORKER_LOST_MESSAGE if exc_type is None or "Abandoned" in getattr(exc_type, "__name__", "") else (
        f"{getattr(exc_type, '__name__', 'Error')}: {exc_value}")
    _end(job, Job.FAILED, error=reason)


def mark_stopped_from_rq(rq_job, connection) -> None:
    job = db.session.get(Job, rq_job.id)
    if job is not None and not job.ended:
        _end(job, Job.CANCELED, message="Stopped")
