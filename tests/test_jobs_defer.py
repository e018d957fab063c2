"""JobRun.defer: a job that waits on slow work elsewhere holds no worker between its runs."""
from __future__ import annotations

from datetime import timedelta

from rq.registry import ScheduledJobRegistry

from app.extensions import db
from app.jobs.runner import enqueue_job, reconcile, retry_job, wake_deferred
from app.models import Job, utcnow
from tests.jobs_helpers import run_deferring


def job_row(job_id: str) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job_id)


def test_deferring_at_once_runs_again_until_done(app, user, run_jobs):
    job = enqueue_job(run_deferring, user_id=user.id, kind="test.defer", title="t", params={"runs": 3, "delay": 0})
    run_jobs()
    job = job_row(job.id)
    assert job.status == "succeeded" and job.result == {"runs": 3} and job.message == "Done after 3 runs"
    assert job.attempts == 1  # the runs of one attempt


def test_a_deferred_job_waits_in_the_scheduler_not_in_a_worker(app, user, run_jobs):
    job = enqueue_job(run_deferring, user_id=user.id, kind="test.defer", title="t",
                      params={"runs": 2, "delay": 600})
    run_jobs()  # a burst worker returns: nothing holds it while the job waits
    job = job_row(job.id)
    assert job.status == "running" and job.result == {"runs": 1} and job.message == "Run 1"
    assert job.heartbeat_at > utcnow() + timedelta(seconds=590)
    scheduled = ScheduledJobRegistry(queue=app.task_queue).get_job_ids()
    assert len(scheduled) == 1 and scheduled[0].startswith(job.id + "-")
    reconcile(job)  # waiting is not being lost
    assert job_row(job.id).status == "running"
    app.task_queue.fetch_job(scheduled[0]).perform()  # what the scheduler runs when it is due
    job = job_row(job.id)
    assert job.status == "succeeded" and job.result == {"runs": 2} and job.attempts == 1


def test_a_webhook_wakes_it_and_the_later_run_is_superseded(app, user, run_jobs):
    job = enqueue_job(run_deferring, user_id=user.id, kind="test.defer", title="t",
                      params={"runs": 2, "delay": 600})
    run_jobs()
    job = job_row(job.id)
    job.prediction_id = "p123"
    db.session.commit()
    assert wake_deferred("p123")
    run_jobs()
    job = job_row(job.id)
    assert job.status == "succeeded" and job.result == {"runs": 2}
    # The run that was due in ten minutes finds itself superseded and changes nothing.
    [late] = ScheduledJobRegistry(queue=app.task_queue).get_job_ids()
    app.task_queue.fetch_job(late).perform()
    assert job_row(job.id).result == {"runs": 2}
    assert not wake_deferred("p123")  # ended: nothing to wake


def test_a_retried_job_ignores_the_runs_of_its_earlier_attempt(app, user, run_jobs):
    job = enqueue_job(run_deferring, user_id=user.id, kind="test.defer", title="t",
                      params={"runs": 3, "delay": 600})
    run_jobs()
    [old] = ScheduledJobRegistry(queue=app.task_queue).get_job_ids()
    job = job_row(job.id)
    job.status, job.error = "failed", "The worker stopped"
    db.session.commit()
    retry_job(job)
    run_jobs()
    assert job_row(job.id).attempts == 2 and job_row(job.id).result == {"runs": 2}
    app.task_queue.fetch_job(old).perform()  # attempt 1's run, due later, does nothing
    assert job_row(job.id).result == {"runs": 2}
