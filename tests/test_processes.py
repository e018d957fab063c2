"""`tessera up` as a process tree: stopping it in any way during a job stops the RQ work-horse too (the
test walks /proc), Ctrl+C stops quietly with one line, and a killed private Redis is restarted with the
workers. These start the real `tessera up` with a private Redis and SQLite in a temporary data folder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from app.processes import Backoff, descendants, is_alive
from app.redis_server import queue_unavailable_message
from tests.live import free_port, wait_until_healthy

GRACE = 2  # TESSERA_STOP_GRACE_SECONDS for these runs


class Up:
    def __init__(self, tmp_path: Path, app_env: dict):
        self.data = tmp_path / "data"
        self.log = tmp_path / "up.log"
        env = {**os.environ, **app_env, "TESSERA_DATA_DIR": str(self.data), "TESSERA_STOP_GRACE_SECONDS": str(GRACE)}
        env.pop("REDIS_URL")  # the private Redis in the data folder
        env.pop("DATABASE_URL", None)
        self.queue_name = env["TESSERA_QUEUE"]
        self.port = free_port()
        with open(self.log, "wb") as log:
            # Own session, like a shell's job: Ctrl+C in a terminal signals the whole foreground group.
            self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(self.port),
                                             "--workers", "1", "--web-workers", "1"], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_healthy(f"http://127.0.0.1:{self.port}", self.process)

    @property
    def redis(self) -> Redis:
        return Redis(unix_socket_path=str(self.data / "run" / "redis.sock"), socket_timeout=2)

    def output(self, start: int = 0) -> str:
        return self.log.read_bytes()[start:].decode(errors="replace")

    def children(self, needle: str) -> list[int]:
        found = []
        for pid in descendants(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in command and is_alive(pid):
                found.append(pid)
        return found

    def workers(self) -> list[int]:
        """The RQ workers `tessera up` started: each leads its own session, while the scheduler process a
        worker forks (``with_scheduler``) shares the worker's group and is left out."""
        found = []
        for pid in self.children("app.cli worker"):
            try:
                if os.getpgid(pid) == pid:
                    found.append(pid)
            except ProcessLookupError:
                continue
        return found

    def horse(self, timeout: float = 30) -> int:
        """The pid of an RQ work-horse: a process forked by a worker, in a process group of its own."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in self.workers():
                for child in descendants(pid):
                    if is_alive(child) and os.getpgid(child) == child:
                        return child
            time.sleep(0.2)
        raise AssertionError("no work-horse started:\n" + self.output())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        for pid in descendants(self.process.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def up(tmp_path, app_env):
    running = Up(tmp_path, app_env)
    yield running
    running.stop()


def _wait_gone(pids: set[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if is_alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if is_alive(pid)]


@pytest.mark.parametrize("how", ["Ctrl+C", "SIGTERM", "SIGKILL of the parent"])
def test_stopping_tessera_up_during_a_job_stops_the_work_horse_too(up, how):
    Queue(up.queue_name, connection=up.redis).enqueue("time.sleep", 600, job_timeout=3600)
    horse = up.horse()
    everything = descendants(up.process.pid)
    assert horse in everything and len(everything) >= 5  # redis, gunicorn + its worker, rq worker + horse
    started = time.monotonic()
    if how == "Ctrl+C":
        os.killpg(up.process.pid, signal.SIGINT)  # what a terminal does: the whole foreground group
    elif how == "SIGTERM":
        up.process.send_signal(signal.SIGTERM)
    else:
        up.process.kill()
    up.process.wait(30)
    left = _wait_gone(everything, timeout=GRACE + 15)
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    assert time.monotonic() - started < GRACE + 15
    if how != "SIGKILL of the parent":
        assert up.process.returncode == 0, up.output()


def test_ctrl_c_stops_in_order_and_says_one_line(up):
    time.sleep(1)  # let the worker register with Redis, so unregistering is part of stopping
    before = len(up.log.read_bytes())
    os.killpg(up.process.pid, signal.SIGINT)
    up.process.wait(30)
    said = up.output(before).replace("\0", "").strip()
    assert up.process.returncode == 0
    assert said == "Tessera stopped.", said


def test_a_killed_private_redis_is_restarted_and_the_workers_with_it(up):
    time.sleep(1)
    [redis_pid] = up.children("redis-server")
    worker_pids = set(up.workers())
    assert len(worker_pids) == 2  # one for every job, one for interactive jobs only
    os.kill(redis_pid, signal.SIGKILL)
    # While it is down, a page that needs the queue says it is restarting (not "start tessera up").
    marker = up.data / "run" / "redis.restarting"
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    assert "restarting it" in queue_unavailable_message(f"unix://{up.data / 'run' / 'redis.sock'}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        servers = [pid for pid in up.children("redis-server") if pid != redis_pid]
        workers = [pid for pid in up.workers() if pid not in worker_pids]
        if servers and len(workers) == 2:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("Redis or the worker was not restarted:\n" + up.output())
    assert up.redis.ping()
    assert not marker.exists()
    said = up.output()
    assert "Redis was killed by SIGKILL; restarting it in 1 s." in said
    assert "Redis restarted; restarting the workers." in said
    # The restarted worker runs jobs again.
    job = Queue(up.queue_name, connection=up.redis).enqueue("time.sleep", 0)
    deadline = time.monotonic() + 30
    while job.get_status(refresh=True) != "finished" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.get_status() == "finished"


def test_restart_delays_grow_and_reset_after_a_good_run():
    backoff = Backoff(initial=1, maximum=8, reset_after=60)
    assert [backoff.delay(uptime=0.5) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.delay(uptime=120) == 1
