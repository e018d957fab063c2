"""Scale-out: two real `tessera worker` processes (as deploy/systemd/tessera-worker@.service runs
them) share one queue; every job runs exactly once and every prediction is created exactly once."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from rq import Worker
from rq.job import Job as RQJob

from app import ROOT
from app.extensions import db
from app.gallery import Generation
from app.generate.tasks import run_generation
from app.jobs.runner import enqueue_job
from app.models import Job

WORKER_UNIT = ROOT / "deploy" / "systemd" / "tessera-worker@.service"
UNIT_VENV = "/srv/tessera/app/.venv/bin/"
JOBS = 6


def worker_command() -> list[str]:
    """The unit's ExecStart, run from this checkout's virtualenv instead of /srv/tessera."""
    exec_start = next(line.removeprefix("ExecStart=") for line in WORKER_UNIT.read_text().splitlines()
                      if line.startswith("ExecStart="))
    assert exec_start.startswith(UNIT_VENV)
    return shlex.split(exec_start.replace(UNIT_VENV, str(Path(sys.executable).parent) + "/"))


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"Gave up waiting: {what}")
        time.sleep(0.2)


def test_two_workers_share_one_queue_without_stepping_on_each_other(app, app_env, user, fake_replicate):
    fake_replicate.polls_per_state = 1  # three polls, about 2 s a job: both listening workers get some
    env = {**os.environ, **app_env}
    workers = [subprocess.Popen(worker_command(), env=env, cwd=ROOT, start_new_session=True) for _ in range(2)]
    try:
        wait_for(lambda: len(Worker.all(queue=app.task_queue)) == 2, "both workers listening")
        jobs = [enqueue_job(run_generation, user_id=user.id, kind="generate.image", title=f"fox {n}",
                            params={"model": "black-forest-labs/flux-schnell",
                                    "input": {"prompt": f"fox {n}", "seed": n}})
                for n in range(JOBS)]

        def all_ended() -> bool:
            db.session.expire_all()
            return all(db.session.get(Job, job.id).ended for job in jobs)

        wait_for(all_ended, "all jobs ended")
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown: idle workers leave at once
        for worker in workers:
            worker.wait(30)

    rows = [db.session.get(Job, job.id) for job in jobs]
    assert [(row.status, row.attempts) for row in rows] == [(Job.SUCCEEDED, 1)] * JOBS
    creates = fake_replicate.requests_to("POST", "/v1/models/")
    assert sorted(request.json["input"]["prompt"] for request in creates) == [f"fox {n}" for n in range(JOBS)]
    assert len({row.prediction_id for row in rows}) == JOBS
    generations = db.session.scalars(db.select(Generation)).all()
    assert sorted(generation.job_id for generation in generations) == sorted(job.id for job in jobs)
    ran_on = {RQJob.fetch(job.id, connection=app.redis).worker_name for job in jobs}
    assert len(ran_on) == 2, f"one worker did everything: {ran_on}"
