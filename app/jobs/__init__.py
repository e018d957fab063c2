"""Background jobs (a shared layer): the Job row, RQ, progress, cancel, retry and the status partial.

Modules: `runner` (enqueue_job, job_run and the job contract — read its docstring before adding a
job), `predictions` (following one Replicate prediction from inside a job), `routes` (the job list,
status polls, cancel, retry). Templates: ``jobs/_status.html`` includes ``<area>/_job_result.html``.
"""
from flask import Blueprint

bp = Blueprint("jobs", __name__)


@bp.app_template_global()
def job_ended(job) -> bool:
    """For Job rows and the snapshots the status poll reads alike."""
    from app.models import Job

    return job.status in Job.ENDED

from app.jobs import routes  # noqa: E402,F401
