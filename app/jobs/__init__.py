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

from app.jobs import display  # noqa: E402

# How jobs read on every page (app/jobs/display.py): names, the progress line, clocks and durations.
for _name in ("kind_name", "progress_line", "elapsed_seconds", "wait_seconds", "run_seconds", "clock", "duration"):
    bp.add_app_template_global(getattr(display, _name), _name)


@bp.app_template_global()
def now():
    """The current time as jobs store it (naive UTC)."""
    from app.models import utcnow

    return utcnow()


from app.jobs import routes  # noqa: E402,F401
