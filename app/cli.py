"""The `tessera` command: run everything on one machine, run workers alone, manage accounts."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from app.config import data_dir_from_env
from app.processes import die_with_parent

STOP_GRACE_SECONDS = 10
RESTART_DELAY_SECONDS = 2


@click.group()
def main() -> None:
    """Tessera: a self-hosted studio for diffusion-model images."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web server listens on.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0, 64), help="Job workers to run.")
@click.option("--web-workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Web server processes.")
def up(host: str, port: int, workers: int, web_workers: int) -> None:
    """Run the web server, the job workers and (unless REDIS_URL is set) a private Redis."""
    data_dir = data_dir_from_env()
    os.environ["TESSERA_DATA_DIR"] = str(data_dir)
    private_redis = None
    if not os.environ.get("REDIS_URL"):
        from app.redis_server import PrivateRedis

        private_redis = PrivateRedis(data_dir / "run").start()
        os.environ["REDIS_URL"] = private_redis.url
    supervisor = Supervisor()
    try:
        _prepare_database()
        supervisor.start("web", [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
                                 "--workers", str(web_workers), "--worker-class", "gthread", "--threads", "8",
                                 "--graceful-timeout", str(STOP_GRACE_SECONDS), "--access-logfile", "-",
                                 "app.wsgi:app"], essential=True)
        for number in range(1, workers + 1):
            supervisor.start(f"worker-{number}", [sys.executable, "-m", "app.cli", "worker"])
        click.echo(f"Tessera is running at http://{host}:{port}/ (data in {data_dir}). Press Ctrl+C to stop.")
        supervisor.run()
    finally:
        supervisor.stop()
        if private_redis is not None:
            private_redis.stop()
    sys.exit(supervisor.exit_code)


@main.command()
@click.option("--count", "-n", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(count: int, burst: bool) -> None:
    """Run job workers against REDIS_URL (the way to scale out to more machines)."""
    if count > 1:
        supervisor = Supervisor()
        try:
            for number in range(1, count + 1):
                args = [sys.executable, "-m", "app.cli", "worker"] + (["--burst"] if burst else [])
                supervisor.start(f"worker-{number}", args, restart=not burst)
            supervisor.run(until_all_exit=burst)
        finally:
            supervisor.stop()
        sys.exit(supervisor.exit_code)
    from rq import Worker

    from app import create_app

    app = create_app()
    _preload_for_jobs()
    with app.app_context():
        name = f"tessera-{socket.gethostname()}-{os.getpid()}"
        Worker([app.task_queue], connection=app.redis, name=name).work(
            # The scheduler runs jobs that deferred themselves (a LoRA training looks again in a minute).
            burst=burst, logging_level="WARNING", with_scheduler=True)


# Job modules, imported once in the worker so every forked work-horse starts with them loaded.
TASK_MODULES = ("app.generate.tasks", "app.canvas.tasks", "app.datasets.tasks", "app.loras.tasks")


def _preload_for_jobs() -> None:
    import importlib
    import importlib.util

    from app.replicate.client import shared_tls_context

    for module in TASK_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    shared_tls_context()


@main.group()
def user() -> None:
    """Manage accounts."""


@user.command("create")
@click.argument("username")
def user_create(username: str) -> None:
    """Create an account; the password is asked for, or read from standard input."""
    from app import create_app
    from app.auth.accounts import AccountError, create_user

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    app = create_app()
    with app.app_context():
        _upgrade(app)
        try:
            create_user(username, password)
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Created user {username}.")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations (`tessera up` does this by itself)."""
    _prepare_database()
    click.echo("The database is up to date.")


def _prepare_database() -> None:
    from app import create_app
    from app.jobs.runner import reconcile_running

    app = create_app()
    with app.app_context():
        _upgrade(app)
        # Jobs left 'running' by a previous run whose worker is gone are shown failed, not running forever.
        reconcile_running()


def _upgrade(app) -> None:
    from flask_migrate import upgrade

    upgrade(directory=str(Path(app.root_path).parent / "migrations"), revision="heads")


class Supervisor:
    """Starts children in their own sessions and stops them in order; restarts workers that die."""

    def __init__(self) -> None:
        self.children: dict[str, dict] = {}
        self.exit_code = 0
        self._stopping = False

    def start(self, name: str, args: list[str], *, essential: bool = False, restart: bool = True) -> None:
        # Own session: Ctrl+C reaches only this supervisor, which then stops the children in order.
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
        self.children[name] = {"args": args, "process": process, "essential": essential, "restart": restart}

    def run(self, *, until_all_exit: bool = False) -> None:
        def request_stop(signum, _frame):
            self._stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not self._stopping:
            for name, child in list(self.children.items()):
                code = child["process"].poll()
                if code is None:
                    continue
                if child["essential"] or until_all_exit or not child["restart"]:
                    if child["essential"]:
                        click.echo(f"{name} exited with code {code}; stopping Tessera.", err=True)
                        self.exit_code = code or 1
                        self._stopping = True
                    elif code:
                        self.exit_code = code
                    del self.children[name]
                else:
                    click.echo(f"{name} exited with code {code}; restarting it.", err=True)
                    time.sleep(RESTART_DELAY_SECONDS)
                    self.start(name, child["args"])
            if until_all_exit and not self.children:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        # Workers first, so no job starts against a web server that is going away.
        ordered = sorted(self.children.items(), key=lambda item: item[1]["essential"])
        for _name, child in ordered:
            _signal_group(child["process"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _name, child in ordered:
            try:
                child["process"].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The whole group: an RQ work-horse or a gunicorn worker must not outlive its parent.
            _signal_group(child["process"], signal.SIGKILL)
            child["process"].wait()
        self.children.clear()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    main()
