"""`tessera up` runs everything on one machine and Ctrl+C stops all of it; accounts from the CLI."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.live import free_port, wait_until_healthy


def _grandchildren(pid: int) -> set[int]:
    """Descendants of ``pid`` that are not its direct children."""
    return {grandchild for child in _descendants(pid) for grandchild in _descendants(child)}


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_up_runs_redis_web_and_worker_and_ctrl_c_stops_everything(tmp_path, app_env):
    env = {**os.environ, **app_env, "TESSERA_DATA_DIR": str(tmp_path / "data")}
    env.pop("REDIS_URL")  # embedded defaults: a private Redis on a Unix socket, SQLite in the data folder
    env.pop("DATABASE_URL", None)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "2"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        assert (tmp_path / "data" / "run" / "redis.sock").is_socket()
        assert (tmp_path / "data" / "tessera.db").exists()  # migrations applied to SQLite in the data folder
        time.sleep(1)  # let the workers register
        children = _descendants(process.pid)
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                            for pid in children if _alive(pid))
        # Counted among up's own children: a worker also forks RQ's scheduler (same command line).
        workers = [Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
                   for pid in _descendants(process.pid) - _grandchildren(process.pid) if _alive(pid)]
        workers = [command for command in workers if "app.cli worker" in command]
        assert "redis-server" in commands and "gunicorn" in commands and len(workers) == 3
        # Two workers for every job and, by default, one more for interactive jobs only.
        assert sorted("--queue interactive" in command for command in workers) == [False, False, True]
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=40)[0]
    assert process.returncode == 0, output
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "processes outlived tessera up"


def test_user_create_reads_the_password_from_stdin(app_env, tmp_path):
    env = {**os.environ, **app_env}
    done = subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "grace"], input="long enough pw\n",
                          text=True, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    again = subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "grace"], input="long enough pw\n",
                           text=True, env=env, capture_output=True)
    assert again.returncode != 0 and "already a user named grace" in again.stderr
    short = subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "bob"], input="short\n",
                           text=True, env=env, capture_output=True)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
