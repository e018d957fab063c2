"""Job lifecycle: progress from logs, cancel mid-run, a worker that dies, the jobs page."""
import os
import re
import signal
import subprocess
import sys
import time

from app.extensions import db
from app.jobs.predictions import _progress_of, follow_prediction
from app.replicate.catalog import client_from_config
from app.generate.tasks import run_generation
from app.jobs.runner import WORKER_LOST_MESSAGE, enqueue_job, job_run
from app.models import Job
from app.replicate.client import Prediction

FLUX = "black-forest-labs/flux-schnell"


def _job(user, **params):
    return enqueue_job(run_generation, user_id=user.id, kind="generate.image", title="t",
                       params={"model": FLUX, "input": {"prompt": "p"}, **params})


def test_progress_comes_from_the_models_log_lines(app, user, fake_replicate):
    fake_replicate.polls_per_state = 4
    job = _job(user)
    seen = []
    with job_run(job.id) as run, client_from_config() as replicate:
        follow_prediction(replicate, run, FLUX, {"prompt": "p"},
                          sleep=lambda _s: seen.append((run.job.progress, run.job.message)))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents)
    messages = [m for _, m in seen]
    assert messages[0] == "Starting on Replicate (cold boot)"
    # One line per phase: the step counter of the model's tqdm bar, its share of the bar, no "52% · 49%".
    steps = [(p, m) for p, m in seen if m.startswith("Step ")]
    assert steps and all(re.fullmatch(r"Step (\d+) of 28", m) for _, m in steps)
    assert all(p == 5 + int(m.split()[1]) * 85 // 28 for p, m in steps)
    assert any(5 < p < 90 for p, _ in steps)  # a real position, mid-way
    assert not any("%" in m for m in messages)
    job = db.session.get(Job, job.id)
    assert job.status == Job.SUCCEEDED
    assert job.predict_time == 0.1  # the fake's metrics.predict_time


def test_a_bar_without_a_counter_shows_its_percentage():
    running = Prediction.from_api({"id": "p", "status": "processing", "logs": " 40%|████      |\n"})
    assert _progress_of(running) == (5 + 40 * 85 // 100, "Running on Replicate: 40%")
    assert _progress_of(Prediction.from_api({"id": "p", "status": "processing", "logs": "loading\n"})) == (
        5, "Running on Replicate")


def test_predict_time_is_counted_once_when_a_retry_resumes_a_finished_prediction(app, user, fake_replicate):
    job = _job(user)
    with job_run(job.id) as run, client_from_config() as replicate:
        follow_prediction(replicate, run, FLUX, {"prompt": "p"}, sleep=lambda _s: None)
        follow_prediction(replicate, run, FLUX, {"prompt": "p"}, sleep=lambda _s: None)  # a retry resumes it
    assert len([r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]) == 1
    assert db.session.get(Job, job.id).predict_time == 0.1


def test_cancel_while_running_cancels_the_prediction(app, user, fake_replicate):
    fake_replicate.polls_per_state = 50
    job = _job(user)

    def user_clicks_cancel(_seconds):
        db.session.execute(db.update(Job).where(Job.id == job.id).values(cancel_requested=True))
        db.session.commit()

    with job_run(job.id) as run, client_from_config() as replicate:
        follow_prediction(replicate, run, FLUX, {"prompt": "p"}, sleep=user_clicks_cancel)
    assert db.session.get(Job, job.id).status == Job.CANCELED
    assert any(r.method == "POST" and r.path.endswith("/cancel") for r in fake_replicate.requests)


def test_job_run_turns_exceptions_into_a_failed_job(app, user):
    job = _job(user)
    try:
        with job_run(job.id):
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    job = db.session.get(Job, job.id)
    assert job.status == Job.FAILED and "disk full" in job.error and job.finished_at


def test_a_worker_that_dies_mid_job_leaves_a_failed_job_that_retry_finishes(client, app, app_env, fake_replicate, run_jobs):
    fake_replicate.polls_per_state = 10_000  # the prediction never finishes while the worker lives
    client.post("/generate", data={"model": FLUX, "prompt": "a fox"})
    job = db.session.scalar(db.select(Job))
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env={**os.environ, **app_env},
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            db.session.expire_all()
            if db.session.get(Job, job.id).prediction_id:
                break
            time.sleep(0.2)
        job = db.session.get(Job, job.id)
        assert job.status == Job.RUNNING and job.prediction_id
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its work-horse die at once
        worker.wait()

    app.config["JOB_STALE_SECONDS"] = 1
    time.sleep(1.5)
    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert "failed" in status and WORKER_LOST_MESSAGE.split(" (")[0] in status

    fake_replicate.polls_per_state = 1
    client.post(f"/jobs/{job.id}/retry")
    run_jobs()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED
    creates = [r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert len(creates) == 1  # the retry polled the prediction the dead worker had started


def test_jobs_page_lists_the_users_jobs(client, user, app):
    job = _job(user)
    page = client.get("/jobs/").get_data(as_text=True)
    assert job.title in page and "queued" in page


def test_enqueue_without_redis_fails_clearly_and_keeps_the_row(app, user, monkeypatch):
    from redis import Redis
    from rq import Queue

    from app.jobs.runner import QueueUnavailable

    app.task_queue = app.interactive_queue = Queue("x", connection=Redis(unix_socket_path="/nonexistent/redis.sock"))
    try:
        _job(user)
    except QueueUnavailable as exc:
        assert "not answering" in str(exc) and "tessera up" not in str(exc)
    else:
        raise AssertionError("expected QueueUnavailable")
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED


def test_an_unchanged_job_answers_a_poll_with_304_and_a_changed_one_with_the_new_partial(client, user, app):
    job = _job(user)
    first = client.get(f"/jobs/{job.id}/status")
    assert first.status_code == 200 and first.headers["ETag"] and "no-cache" in first.headers["Cache-Control"]
    again = client.get(f"/jobs/{job.id}/status", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""

    db.session.execute(db.update(Job).where(Job.id == job.id).values(status=Job.RUNNING, progress=40))
    db.session.commit()
    changed = client.get(f"/jobs/{job.id}/status", headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and 'value="40"' in changed.get_data(as_text=True)
    assert changed.headers["ETag"] != first.headers["ETag"]


def test_a_status_poll_from_a_session_whose_account_is_gone_is_sent_to_log_in(client, user, app):
    job = _job(user)
    assert client.get(f"/jobs/{job.id}/status").status_code == 200
    with client.session_transaction() as session:
        session["_user_id"] = "999999"
    response = client.get(f"/jobs/{job.id}/status")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_progress_is_clamped_and_commits_only_what_changes(app, user):
    from sqlalchemy import event

    job = _job(user)
    with job_run(job.id) as run:
        commits = []
        event.listen(db.session(), "after_commit", lambda _session: commits.append(run.job.progress))
        run.progress(130)  # more than done: 100
        run.progress(100)
        run.progress(250)  # still 100: nothing to write
        run.progress(-5)  # less than nothing: 0
        run.progress(-1)
        run.progress(None, "Saving")
        run.progress(None, "Saving")
        during = list(commits)
    assert during == [100, 0, 0]  # 130 → 100, -5 → 0, the new message; every repeat left alone
    assert db.session.get(Job, job.id).status == Job.SUCCEEDED
