"""Interactive jobs never wait behind long ones: real `tessera worker` processes on a real Redis.

`tessera up` runs one worker for every job (interactive first) and one for interactive jobs only
(app.jobs.queues); a dataset check queued while an export holds the first worker still runs at once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

from rq import Queue, Worker
from rq.job import Job as RQJob
from rq.registry import ScheduledJobRegistry

from app import ROOT
from app.datasets import bulkedit
from app.extensions import db
from app.jobs.display import wait_seconds
from app.jobs.runner import enqueue_job, retry_job
from app.models import Job, utcnow
from tests.datasets_helpers import make_folder, open_dataset
from tests.jobs_helpers import run_at_once, run_deferring, run_holding

FLUX = "black-forest-labs/flux-schnell"


def start_worker(app_env, *queues: str, burst: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "app.cli", "worker", *[f"--queue={name}" for name in queues]]
    return subprocess.Popen(args + (["--burst"] if burst else []), env={**os.environ, **app_env}, cwd=ROOT,
                            start_new_session=True)


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.wait(30)


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Gave up waiting: {what}")
        time.sleep(0.1)


def row(job: Job) -> Job:
    db.session.expire_all()
    return db.session.get(Job, job.id)


def holding(user, release, title="Export"):
    return enqueue_job(run_holding, user_id=user.id, kind="datasets.export", title=title,
                       params={"release": str(release)})


def quick(user):
    return enqueue_job(run_at_once, user_id=user.id, kind="datasets.check", title="Check", interactive=True)


def ran_on(app, job: Job, worker: subprocess.Popen) -> bool:
    return RQJob.fetch(job.id, connection=app.redis).worker_name.endswith(f"-{worker.pid}")


def test_an_interactive_job_runs_while_a_long_one_holds_the_worker_of_tessera_up(app, app_env, user, tmp_path):
    release = tmp_path / "release"
    workers = [start_worker(app_env), start_worker(app_env, "interactive")]  # what `tessera up` starts
    try:
        wait_for(lambda: len(Worker.all(queue=app.interactive_queue)) == 2, "both workers listening")
        export, second = holding(user, release), holding(user, release, "Second export")
        wait_for(lambda: row(export).status == Job.RUNNING, "the export started")
        check = quick(user)
        wait_for(lambda: row(check).status == Job.SUCCEEDED, "the check ran", timeout=30)
        # Done while the export still holds the worker for every job and the second export waits.
        assert row(export).status == Job.RUNNING and row(second).status == Job.QUEUED
        assert row(check).finished_at < utcnow() and ran_on(app, check, workers[1])
        release.touch()
        wait_for(lambda: row(second).ended, "the exports ended")
    finally:
        release.touch()
        stop(workers)
    assert row(export).status == row(second).status == Job.SUCCEEDED
    # The interactive-only worker never took a long job.
    assert ran_on(app, export, workers[0]) and ran_on(app, second, workers[0])


def test_one_worker_takes_an_interactive_job_before_long_ones_queued_earlier(app, app_env, user, tmp_path):
    release = tmp_path / "release"
    workers = [start_worker(app_env)]
    try:
        export = holding(user, release)
        wait_for(lambda: row(export).status == Job.RUNNING, "the export started")
        second = holding(user, release, "Second export")
        check = quick(user)  # queued after the second export
        release.touch()
        wait_for(lambda: row(second).ended and row(check).ended, "every job ended")
    finally:
        release.touch()
        stop(workers)
    check, second = row(check), row(second)
    assert check.status == second.status == Job.SUCCEEDED
    assert check.finished_at <= second.started_at, "the long job queued first ran first"


def test_jobs_queued_before_the_upgrade_still_run(app, app_env, user):
    # What the code before this change did: a row without a queue, pushed onto the one queue there was.
    job = Job(id="0" * 32, user_id=user.id, kind="datasets.scan", title="Old", task="tests.jobs_helpers.run_at_once",
              params={}, result={})
    db.session.add(job)
    db.session.commit()
    Queue(app_env["TESSERA_QUEUE"], connection=app.redis).enqueue("tests.jobs_helpers.run_at_once", job.id,
                                                                  job_id=job.id)
    assert row(job).queue == "long"
    interactive_only = start_worker(app_env, "interactive", burst=True)
    interactive_only.wait(60)
    assert row(job).status == Job.QUEUED  # not an interactive job
    start_worker(app_env, burst=True).wait(60)  # a default `tessera worker` serves the old queue
    assert row(job).status == Job.SUCCEEDED


def test_retries_and_deferred_runs_stay_on_the_jobs_queue(app, user, run_jobs):
    check = quick(user)
    export = enqueue_job(run_at_once, user_id=user.id, kind="datasets.export", title="Export")
    assert app.interactive_queue.job_ids == [check.id] and app.task_queue.job_ids == [export.id]
    run_jobs()
    retry_job(check)
    assert app.interactive_queue.job_ids == [check.id] and app.task_queue.job_ids == []
    run_jobs()
    deferring = enqueue_job(run_deferring, user_id=user.id, kind="datasets.check", title="Waits",
                            params={"runs": 2, "delay": 60}, interactive=True)
    run_jobs()
    [later] = ScheduledJobRegistry(queue=app.interactive_queue).get_job_ids()
    assert later.startswith(deferring.id) and ScheduledJobRegistry(queue=app.task_queue).get_job_ids() == []


def test_the_queue_wait_of_a_retried_job_starts_at_the_retry(app, user, run_jobs):
    job = quick(user)
    job.status, job.created_at, job.queued_at = Job.FAILED, utcnow() - timedelta(hours=2), utcnow() - timedelta(hours=2)
    db.session.commit()
    retry_job(job)
    assert wait_seconds(row(job), utcnow()) < 60
    run_jobs()
    job = row(job)
    assert job.status == Job.SUCCEEDED and wait_seconds(job, utcnow()) < 60


def test_the_jobs_page_says_which_jobs_are_interactive(client, user):
    check, export = quick(user), enqueue_job(run_at_once, user_id=user.id, kind="datasets.export", title="Export")
    page = client.get("/jobs/").get_data(as_text=True)
    def row_of(job):
        start = page.index(f'id="job-row-{job.id}"')
        return page[start:page.index("</tr>", start)]

    check_row, export_row = row_of(check), row_of(export)
    assert "· interactive" in check_row and "· interactive" not in export_row


def test_page_waited_work_is_interactive_and_long_work_is_not(client, app, user, run_jobs, monkeypatch):
    client.post("/generate", data={"model": FLUX, "prompt": "a fox"})
    assert db.session.scalar(db.select(Job.queue).where(Job.kind == "generate.image")) == "interactive"
    dataset = open_dataset(client, run_jobs, make_folder(app))
    assert db.session.scalar(db.select(Job.queue).where(Job.kind == "datasets.scan")) == "long"
    db.session.get(type(dataset), dataset.id).scanned_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    client.get(f"/datasets/{dataset.id}")  # opening it checks for changes on disk
    assert db.session.scalar(db.select(Job.queue).where(Job.kind == "datasets.check")) == "interactive"

    app.config["DATASET_BULK_INLINE_LIMIT"] = 0  # every edit a job
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "solo"})
    monkeypatch.setattr(bulkedit, "INTERACTIVE_CAPTIONS", 3)  # 4 captions: now too many
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "smile"})
    edits = db.session.scalars(db.select(Job).where(Job.kind == "datasets.bulk").order_by(Job.created_at)).all()
    assert [job.queue for job in edits] == ["interactive", "long"]
