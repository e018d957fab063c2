"""Enqueueing jobs and running them: the bridge between RQ and the Job table.

The Job row is the single source of truth the status partial reads, so polling costs one indexed
SELECT. RQ only carries the job id.

How to add a job (the contract every job keeps)
-----------------------------------------------
1. Write ``run_<verb>(job_id: str) -> None`` at module level in the area's ``tasks.py`` and list
   the module in ``app.cli.TASK_MODULES``. Its body is ``with job_run(job_id) as run:``; read inputs
   from ``run.job.params``, report with ``run.progress(percent, message)``, call
   ``run.check_canceled()`` between steps, and raise `JobFailed("…")` with a sentence for the
   user when the job cannot go on. Any other exception also fails the job (and is logged by RQ).
   Set ``run.job.result`` (a JSON dict) and ``run.job.message`` before the body ends.
2. Enqueue it from a view with the function itself::

       job = enqueue_job(run_export, user_id=current_user.id, kind="datasets.export",
                         title=f"Export {dataset.name}", params={"dataset_id": dataset.id, ...})
       return render_template("jobs/_status.html", job=job)

   and answer `QueueUnavailable` (Redis is down; the row already says why) with a message.
3. ``kind`` is ``"<area>.<verb>"`` (``generate.image``, ``canvas.generate``, ``datasets.scan``);
   the area part must be the area's template folder (rows from before 2026-11 say just ``generate``).
4. ``params`` is JSON: ids of rows, never the rows; no secrets (they are stored in the job row).
   A retry re-runs the function with the same params, so the job must be safe to run again:
   `follow_prediction` resumes the stored prediction rather than paying twice.
5. ``result`` is JSON and read by ``templates/<area>/_job_result.html``, which the shared status
   partial includes once the job succeeded. That partial may rely on ``job.id``, ``job.kind``,
   ``job.title``, ``job.message`` and the keys its own jobs write into ``job.result``, and must
   treat every key as optional (use ``job.result.get``): an older job may lack a newer key.
   Keys in use: ``generations`` (list of Generation ids) — generate.image, canvas.generate;
   ``canvas_id``, ``request_id``, ``variations`` — canvas.generate; ``dataset_id`` — every
   datasets job; ``download`` (path under DATA_DIR) and ``filename`` — datasets.export;
   ``skipped`` (list of [name, reason]) — datasets.scan/check/export; ``changed``, ``batch_id``, ``conflicts``
   (also ``errors``, ``uncertain``, each with ``*_total``) — datasets.bulk/undo; ``captioned`` (ids) and
   ``failures`` ({name: reason}) — datasets.caption; ``lora_id``, ``training_id``, ``upload_url``,
   ``create_sent`` — loras.train; ``lora_id``, ``generations``, ``scales``, ``by_scale`` — loras.samples.
6. ``interactive=True``: the interactive queue, for short bounded work a page waits on (app.jobs.queues).
7. A job that waits on slow work elsewhere ends each run with ``run.defer(seconds)`` instead of
   sleeping: it runs again later (same function, same job id) without holding a worker meanwhile,
   and must carry on from what it stored (loras.train polls its stored training id).
"""
from __future__ import annotations

import logging
import os
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator

from flask import current_app
from redis.exceptions import RedisError
from rq import Callback
from rq.exceptions import NoSuchJobError
from rq.job import Job as RQJob

from app.atomic import storage_error_message
from app.extensions import db
from app.jobs.queues import INTERACTIVE, LONG, queue_named
from app.models import Job, utcnow
from app.redis_server import queue_unavailable_message
from app.replicate.client import shorten_urls

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


class JobDeferred(Exception):
    """Raised by `JobRun.defer`: this run ends, the job stays running and runs again after `delay` s."""

    def __init__(self, delay: float) -> None:
        super().__init__(delay)
        self.delay = delay


class JobFailed(Exception):
    """Raised inside a job function with a message meant for the user; ``result`` (optional JSON)
    becomes the failed job's result, e.g. which inputs a model refused so the page can show them."""

    def __init__(self, message: str, *, result: dict | None = None) -> None:
        super().__init__(message)
        self.result = result


def task_path(task: Callable[[str], None]) -> str:
    """The dotted path RQ imports `task` by (stored in ``Job.task`` for Retry).

    Raises ValueError for a function a worker could not import by name (a lambda, a nested function).
    """
    module, name = getattr(task, "__module__", None), getattr(task, "__qualname__", "")
    if not module or not name or "<" in name or "." in name:
        raise ValueError(f"A job must be a module-level function, not {task!r}")
    return f"{module}.{name}"


def enqueue_job(task: Callable[[str], None], *, user_id: int, kind: str, title: str, params: dict | None = None,
                timeout: int = 3600, interactive: bool = False) -> Job:
    """Record a job for `user_id` and queue ``task(job_id)`` on the app's RQ queue.

    `task` is the job function itself (a module-level ``run_*``; see the module docstring for the
    contract); `kind` is ``"<area>.<verb>"``; `title` is what the job list shows (cut to 200
    characters); `params` is the JSON the function reads from ``job.params``; `timeout` is RQ's limit
    in seconds; `interactive` puts it on the interactive queue (contract point 6; retries keep it).
    The row is committed before the job is queued, so a worker always finds it. Returns the Job row
    (status ``queued``). Raises `QueueUnavailable` when Redis cannot be reached: the row then says so.
    """
    job = Job(id=uuid.uuid4().hex, user_id=user_id, kind=kind, title=title[:200], task=task_path(task),
              params=params or {}, result={}, queue=INTERACTIVE if interactive else LONG, queued_at=utcnow())
    db.session.add(job)
    # The row must exist before a worker can pick the job up.
    db.session.commit()
    _push(job, timeout)
    return job


def retry_job(job: Job, timeout: int = 3600) -> None:
    """Re-run an ended job under the same id, on its queue; its stored prediction id is kept on purpose."""
    job.status, job.progress, job.error, job.message = Job.QUEUED, 0, None, "Queued again"
    job.cancel_requested = False
    job.started_at = job.finished_at = job.heartbeat_at = None
    job.queued_at = utcnow()  # its wait in the queue starts again
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
        queue_named(current_app, job.queue).enqueue(
            job.task, job.id, job_id=job.id, job_timeout=timeout, result_ttl=86400, failure_ttl=7 * 86400,
            on_failure=Callback(mark_failed_from_rq), on_stopped=Callback(mark_stopped_from_rq),
        )
    except RedisError as exc:
        # "Restarting" when `tessera up` is bringing its Redis back, never "start Tessera" while it runs.
        job.status, job.error, job.finished_at = (
            Job.FAILED, queue_unavailable_message(current_app.config["REDIS_URL"]), utcnow())
        db.session.commit()
        raise QueueUnavailable(job.error) from exc


def _continuation_of_this_run() -> tuple[int, str] | None:
    """(attempt, due) of a deferred run, or None for a first run (or outside RQ). Only the run of the
    job's current attempt that is due when the job says goes on; others were superseded."""
    from rq import get_current_job

    rq_job = get_current_job()
    meta = rq_job.meta if rq_job is not None else {}
    if meta.get("tessera_continues") is None:
        return None
    return int(meta["tessera_continues"]), str(meta.get("tessera_due"))


def continue_job(task: str, job_id: str) -> None:
    """What a deferred job's next run executes: `task(job_id)`, unless this run was superseded (the job
    ended, was retried, or was woken earlier than this run was due), in which case nothing happens."""
    import importlib

    continuation = _continuation_of_this_run()
    job = db.session.get(Job, job_id)
    if job is None or job.status != Job.RUNNING or continuation != (job.attempts, _due_text(job)):
        db.session.rollback()
        return
    module, _, name = task.rpartition(".")
    getattr(importlib.import_module(module), name)(job_id)


def _due_text(job: Job) -> str:
    return job.heartbeat_at.isoformat() if job.heartbeat_at else ""


def wake_deferred(prediction_id: str) -> bool:
    """Run the deferred job following `prediction_id` now (a webhook said it ended); the later run is superseded."""
    job = db.session.scalar(db.select(Job).where(Job.prediction_id == prediction_id, Job.status == Job.RUNNING))
    if job is None or job.heartbeat_at is None or job.heartbeat_at <= utcnow():
        return False  # not waiting: a run is under way and will see the news
    _push_continuation(job, 0)
    return True


def _push_continuation(job: Job, delay: float) -> None:
    """Queue the next run of a deferred job, now or after `delay` seconds (RQ's scheduler)."""
    # Not stale while it waits: the heartbeat says when the next run is due.
    job.heartbeat_at = utcnow() + timedelta(seconds=delay)
    db.session.commit()
    options = dict(job_id=f"{job.id}-{uuid.uuid4().hex[:8]}", job_timeout=3600, result_ttl=3600,
                   failure_ttl=7 * 86400, meta={"tessera_continues": job.attempts, "tessera_due": _due_text(job)},
                   on_failure=Callback(mark_failed_from_rq), on_stopped=Callback(mark_stopped_from_rq))
    queue = queue_named(current_app, job.queue)
    try:
        if delay <= 0:
            queue.enqueue(continue_job, job.task, job.id, **options)
        else:
            queue.enqueue_in(timedelta(seconds=delay), continue_job, job.task, job.id, **options)
    except RedisError:
        # Nothing will run it: the heartbeat goes stale and the job shows "worker stopped", and Retry
        # carries on from what it stored.
        log.warning("Could not queue the next run of job %s", job.id)


def _job_row_of(rq_job) -> Job | None:
    """The Job row of an RQ job: its id, or the part before "-" for a deferred run (Job ids are hex)."""
    return db.session.get(Job, str(rq_job.id).split("-", 1)[0])


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
    # A model's error may quote a 10 kB data: URI or a long signed URL: every URL is cut short.
    job.error = shorten_urls(error) if error else error
    db.session.commit()


def is_stale(job, stale_after: timedelta | None = None) -> bool:
    """An unfinished job whose worker has not been heard from for too long (works on rows and snapshots)."""
    if job.status in Job.ENDED:
        return False
    stale_after = stale_after or timedelta(seconds=current_app.config.get("JOB_STALE_SECONDS", 90))
    return utcnow() - (job.heartbeat_at or job.started_at or job.queued_at or job.created_at) > stale_after


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
    for job in db.session.scalars(query if user_id is None else query.where(Job.user_id == user_id)):
        reconcile(job)


# --- inside the worker -----------------------------------------------------------------------


class JobRun:
    """What a job function holds while it works: progress, heartbeat, cancel checks."""

    def __init__(self, job: Job):
        self.job = job
        self._last_beat = utcnow()

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        """Show how far the job is: `percent` of the whole job (0–100, clamped; None keeps it) and a
        short `message` for the user (None keeps it). Commits when either changed (130 on a job at 100
        does not), and otherwise at most every HEARTBEAT_EVERY (5 s) as the worker's heartbeat."""
        changed = False
        if percent is not None and (percent := max(0, min(100, int(percent)))) != self.job.progress:
            self.job.progress = percent
            changed = True
        if message is not None and message != self.job.message:
            self.job.message = message
            changed = True
        now = utcnow()
        if changed or now - self._last_beat >= HEARTBEAT_EVERY:
            self.job.heartbeat_at = self._last_beat = now
            db.session.commit()

    def add_predict_time(self, seconds: float | None) -> None:
        """Add a finished prediction's billed model time (its ``metrics.predict_time``, seconds)."""
        if seconds is None:
            return
        self.job.predict_time = (self.job.predict_time or 0.0) + seconds
        db.session.commit()

    def set_prediction(self, prediction_id: str) -> None:
        """Store the Replicate prediction id at once, so a retry resumes it instead of paying twice."""
        self.job.prediction_id = prediction_id
        db.session.commit()

    def cancel_requested(self) -> bool:
        """Whether the user asked to cancel (read from the database: the request came from the web)."""
        db.session.refresh(self.job, ["cancel_requested"])
        return self.job.cancel_requested

    def defer(self, seconds: float) -> None:
        """End this run without ending the job: the same function runs again for the same job after
        `seconds` (on any worker; none is held meanwhile) and carries on from what the rows say. For a
        job that waits on slow work elsewhere, e.g. a Replicate training of tens of minutes. The job
        stays "running", its heartbeat set to when the next run is due, so it is not taken for lost.
        Needs workers running RQ's scheduler (`tessera worker` does) unless `seconds` is 0; call it last."""
        raise JobDeferred(max(0.0, float(seconds)))

    def check_canceled(self) -> None:
        """Raise `JobCanceled` (ending the job as canceled) when the user asked to cancel."""
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
    if _continuation_of_this_run() is not None:  # continue_job checked it is the run that is due
        job.heartbeat_at = utcnow()
    else:
        job.status, job.started_at, job.heartbeat_at = Job.RUNNING, utcnow(), utcnow()
        job.attempts += 1
        job.message = "Starting"
    db.session.commit()
    run = JobRun(job)
    try:
        yield run
    except JobDeferred as exc:
        db.session.commit()  # what this run recorded
        _push_continuation(job, exc.delay)
        return
    except JobCanceled:
        db.session.rollback()
        _end(job, Job.CANCELED, message="Canceled")
        return
    except JobFailed as exc:
        db.session.rollback()
        if exc.result is not None:
            job.result = exc.result
        _end(job, Job.FAILED, error=str(exc))
        return
    except Exception as exc:
        db.session.rollback()
        # A full disk is said plainly (no OS error text with a server path); the rest as before.
        message = (storage_error_message(exc) or getattr(exc, "message", None)
                   or f"{type(exc).__name__}: {exc}")
        _end(job, Job.FAILED, error=message)
        raise
    if not job.ended:
        _end(job, Job.SUCCEEDED, message=job.message if job.message != "Starting" else "Done")


_engine_pid: dict[str, int] = {}


def mark_failed_from_rq(rq_job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failure callback: also runs for abandoned jobs (a dead worker) and timeouts."""
    job = _job_row_of(rq_job)
    if job is None or job.ended:
        return
    reason = WORKER_LOST_MESSAGE if exc_type is None or "Abandoned" in getattr(exc_type, "__name__", "") else (
        f"{getattr(exc_type, '__name__', 'Error')}: {exc_value}")
    _end(job, Job.FAILED, error=reason)


def mark_stopped_from_rq(rq_job, connection) -> None:
    job = _job_row_of(rq_job)
    if job is not None and not job.ended:
        _end(job, Job.CANCELED, message="Stopped")
