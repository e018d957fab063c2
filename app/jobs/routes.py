"""The job list, the status partial every page polls, cancel and retry."""
import hashlib

from flask import Response, abort, current_app, make_response, render_template, request
from flask_login import current_user
from redis.exceptions import RedisError

from app.auth.access import checks_own_login, owned_or_404, session_login
from app.extensions import db, login_manager
from app.jobs import bp
from app.jobs.display import STATE_FILTERS, STATE_LABELS
from app.jobs.runner import QueueUnavailable, cancel_job, is_stale, reconcile, reconcile_running, retry_job
from app.models import Job
from app.replicate.catalog import client_from_config
from app.replicate.client import ReplicateError


JOB_LIST_LIMIT = 100


@bp.get("/")
def index():
    """The latest jobs, optionally of one state (``?state=`` a key of STATE_FILTERS)."""
    return render_template("jobs/index.html", **_rows_context())


@bp.get("/rows")
def rows():
    """The table body alone: what the jobs page polls while a listed job is queued or running."""
    return render_template("jobs/_rows.html", **_rows_context())


def _rows_context() -> dict:
    reconcile_running(current_user.id)
    state = request.args.get("state", "")
    if state not in STATE_FILTERS:
        state = ""
    query = db.select(Job).where(Job.user_id == current_user.id)
    if state:
        query = query.where(Job.status.in_(STATE_FILTERS[state]))
    jobs = db.session.scalars(query.order_by(Job.created_at.desc()).limit(JOB_LIST_LIMIT)).all()
    return {"jobs": jobs, "state": state, "state_labels": STATE_LABELS,
            "any_active": any(not job.ended for job in jobs)}


@bp.get("/<job_id>/status")
@checks_own_login
def status(job_id):
    # Every open page polls this once a second: one query authorises and reads a snapshot, the ORM
    # row is loaded only to reconcile, and an unchanged job gets a 304 (browsers revalidate by ETag).
    login = session_login()
    if login is None:
        return login_manager.unauthorized()
    job = Job.snapshot(job_id, login)
    if job is None:
        # Not this user's job, or the session names an account that is gone (then: logged out).
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        abort(404)
    if is_stale(job):
        job = owned_or_404(Job, job_id)
        reconcile(job)
    etag = _status_etag(job)
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        response = make_response(render_template("jobs/_status.html", job=job))
    response.set_etag(etag)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _status_etag(job) -> str:
    """Everything the partial shows, so a changed job never matches an old tag."""
    shown = (job.status, job.progress, job.message, job.error, job.cancel_requested, str(job.result))
    return hashlib.blake2b(repr(shown).encode(), digest_size=12).hexdigest()


@bp.post("/<job_id>/cancel")
def cancel(job_id):
    job = owned_or_404(Job, job_id)
    cancel_job(job)
    if job.prediction_id and not job.ended:
        _cancel_prediction_now(job.prediction_id)
    return render_template("jobs/_status.html", job=job)


@bp.post("/<job_id>/retry")
def retry(job_id):
    job = owned_or_404(Job, job_id)
    if job.status not in (Job.FAILED, Job.CANCELED):
        abort(409, "Only a failed or canceled job can be retried.")
    try:
        retry_job(job)
    except QueueUnavailable:
        pass  # the row now says why
    return render_template("jobs/_status.html", job=job)


def _cancel_prediction_now(prediction_id: str) -> None:
    """Stop paying at once; the worker also cancels when it next polls, so a failure here is harmless."""
    if not current_app.config["REPLICATE_API_TOKEN"]:
        return
    try:
        with client_from_config() as client:
            client.cancel_prediction(prediction_id)
    except (ReplicateError, RedisError):
        pass
