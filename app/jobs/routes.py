from flask import abort, current_app, render_template
from flask_login import current_user
from redis.exceptions import RedisError

from app.extensions import db
from app.jobs import bp
from app.jobs.runner import QueueUnavailable, cancel_job, is_stale, reconcile, reconcile_running, retry_job
from app.models import Job


def owned_job(job_id: str) -> Job:
    job = db.session.get(Job, job_id)
    if job is None or job.user_id != current_user.id:
        abort(404)
    return job


@bp.get("/")
def index():
    reconcile_running(current_user.id)
    jobs = db.session.scalars(
        db.select(Job).where(Job.user_id == current_user.id).order_by(Job.created_at.desc()).limit(100)
    ).all()
    return render_template("jobs/index.html", jobs=jobs)


@bp.get("/<job_id>/status")
def status(job_id):
    # Every open page polls this once a second: read a snapshot, load the ORM row only to reconcile.
    job = Job.snapshot(job_id, current_user.id)
    if job is None:
        abort(404)
    if is_stale(job):
        job = owned_job(job_id)
        reconcile(job)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<job_id>/cancel")
def cancel(job_id):
    job = owned_job(job_id)
    cancel_job(job)
    if job.prediction_id and not job.ended:
        _cancel_prediction_now(job.prediction_id)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<job_id>/retry")
def retry(job_id):
    job = owned_job(job_id)
    if job.status not in (Job.FAILED, Job.CANCELED):
        abort(409, "Only a failed or canceled job can be retried.")
    try:
        retry_job(job)
    except QueueUnavailable:
        pass  # the row now says why
    return render_template("jobs/_status.html", job=job)


def _cancel_prediction_now(prediction_id: str) -> None:
    """Stop paying at once; the worker also cancels when it next polls, so a failure here is harmless."""
    from app.jobs.predictions import client_from_config
    from app.replicate.client import ReplicateError

    if not current_app.config["REPLICATE_API_TOKEN"]:
        return
    try:
        with client_from_config() as client:
            client.cancel_prediction(prediction_id)
    except (ReplicateError, RedisError):
        pass
