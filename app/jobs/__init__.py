from flask import Blueprint

bp = Blueprint("jobs", __name__)


@bp.app_template_global()
def job_ended(job) -> bool:
    """For Job rows and the snapshots the status poll reads alike."""
    from app.models import Job

    return job.status in Job.ENDED

from app.jobs import routes  # noqa: E402,F401
