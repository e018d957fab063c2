"""The `tessera` command: run everything on one machine, run workers alone, manage accounts."""
from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from app.config import data_dir_from_env
from app.jobs.queues import INTERACTIVE, QUEUES
from app.processes import Supervisor

# Seconds a running job, the web server and Redis each get to stop before they are killed.
STOP_GRACE_SECONDS = float(os.environ.get("TESSERA_STOP_GRACE_SECONDS", "10"))


@click.group()
def main() -> None:
    """Tessera: a self-hosted studio for diffusion-model images."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web server listens on.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0, 64),
              help="Job workers for every job (each takes interactive jobs first, then long ones).")
@click.option("--interactive-workers", type=click.IntRange(0, 64),
              help="Extra workers that run only interactive jobs, so those never wait behind a long one "
                   "[default: 1, or 0 with --workers 0].")
@click.option("--web-workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Web server processes.")
def up(host: str, port: int, workers: int, interactive_workers: int | None, web_workers: int) -> None:
    """Run the web server, the job workers and (unless REDIS_URL is set) a private Redis.

    Interactive jobs (short work a page waits on: checking a dataset for changes, small caption edits
    and undos, a generation the page shows) have a queue of their own; long jobs (scans, thumbnails,
    exports, crops, trainings) another. With the defaults one worker runs everything, interactive jobs
    first, and one more runs only interactive jobs, so a dataset check starts at once even while an
    export runs.
    """
    if interactive_workers is None:
        interactive_workers = 1 if workers else 0
    data_dir = data_dir_from_env()
    os.environ["TESSERA_DATA_DIR"] = str(data_dir)
    with _supervised() as supervisor:
        if not os.environ.get("REDIS_URL"):
            from app.redis_server import PrivateRedis

            try:
                supervisor.attach_redis(PrivateRedis(data_dir / "run").start())
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
            os.environ["REDIS_URL"] = supervisor.redis.url
        _prepare_database()
        if not supervisor.stopping:
            supervisor.start("web", [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}",
                                     "--workers", str(web_workers), "--worker-class", "gthread", "--threads", "8",
                                     "--graceful-timeout", str(int(STOP_GRACE_SECONDS)), "--access-logfile", "-",
                                     "--log-level", "warning", "app.wsgi:app"], role="web", essential=True)
            for number in range(1, workers + 1):
                supervisor.start(f"worker-{number}", [sys.executable, "-m", "app.cli", "worker"])
            for number in range(1, interactive_workers + 1):
                supervisor.start(f"interactive-worker-{number}",
                                 [sys.executable, "-m", "app.cli", "worker", "--queue", INTERACTIVE])
            click.echo(f"Tessera is running at http://{host}:{port}/ (data in {data_dir}). Press Ctrl+C to stop.")
            supervisor.run()
    click.echo("Tessera stopped." if not supervisor.exit_code else "Tessera stopped after an error (see above).")
    sys.exit(supervisor.exit_code)


def _say(message: str) -> None:
    click.echo(f"[tessera] {message}", err=True)


@contextmanager
def _supervised() -> Iterator[Supervisor]:
    """A Supervisor for `up` and `worker -n`: from the start Ctrl+C (or SIGTERM) asks for an orderly
    stop, even while starting up; leaving the block stops every process it started."""
    supervisor = Supervisor(grace=STOP_GRACE_SECONDS, say=_say)
    supervisor.install_signal_handlers()
    try:
        yield supervisor
    finally:
        supervisor.stop()


@main.command()
@click.option("--count", "-n", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--queue", "-q", "queues", multiple=True, type=click.Choice(QUEUES),
              help="A queue to take jobs from; repeat for both [default: interactive and long]. "
                   "Interactive jobs are always taken first.")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
def worker(count: int, queues: tuple[str, ...], burst: bool) -> None:
    """Run job workers against REDIS_URL (the way to scale out to more machines).

    A worker takes interactive jobs (short work a page is waiting on) before long ones. `--queue
    interactive` makes a worker that never starts a long job, so interactive jobs keep moving however
    many long ones are queued; `--queue long` one that leaves interactive jobs to others.
    """
    queues = queues or QUEUES
    if count > 1:
        with _supervised() as supervisor:
            for number in range(1, count + 1):
                args = [sys.executable, "-m", "app.cli", "worker"] + [f"--queue={name}" for name in queues]
                args += ["--burst"] if burst else []
                supervisor.start(f"worker-{number}", args, restart=not burst)
            supervisor.run(until_all_exit=burst)
        sys.exit(supervisor.exit_code)
    from app import create_app
    from app.jobs.queues import worker_queues
    from app.worker import TesseraWorker

    app = create_app()
    _preload_for_jobs()
    with app.app_context():
        name = f"tessera-{socket.gethostname()}-{os.getpid()}"
        worker = TesseraWorker(worker_queues(app, queues), connection=app.redis, name=name)
        worker.stop_grace = STOP_GRACE_SECONDS
        # The scheduler runs jobs that deferred themselves (a LoRA training looks again in a while).
        worker.work(burst=burst, logging_level="WARNING", with_scheduler=True)


# Job modules, imported once in the worker so every forked work-horse starts with them loaded.
TASK_MODULES = ("app.generate.tasks", "app.canvas.tasks", "app.datasets.tasks", "app.datasets.bulkedit", "app.datasets.filetasks",
                "app.loras.tasks")


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
    from app.auth.accounts import create_user

    password = _read_password("Password")
    _change_account(lambda: create_user(username, password))
    click.echo(f"Created user {username}.")


@user.command("passwd")
@click.argument("username")
def user_passwd(username: str) -> None:
    """Set a new password for an account (the way back in after a forgotten one); ends every session
    it has. The password is asked for twice, or read from standard input."""
    from app.auth.accounts import set_password, user_named

    password = _read_password("New password")
    _change_account(lambda: set_password(user_named(username), password))
    click.echo(f"Changed the password of {username.strip()}; its sessions have ended.")


def _read_password(prompt: str) -> str:
    """Asked for twice on a terminal; otherwise the first line of standard input."""
    if sys.stdin.isatty():
        return click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\n")


def _change_account(change: Callable[[], object]) -> None:
    """Run `change` in an app context on an up-to-date database; an AccountError is the command's error."""
    from app import create_app
    from app.auth.accounts import AccountError

    app = create_app()
    with app.app_context():
        _upgrade(app)
        try:
            change()
        except AccountError as exc:
            raise click.ClickException(str(exc)) from None


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


if __name__ == "__main__":
    main()
