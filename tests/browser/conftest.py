"""Browser tests: Playwright driving Debian's Chromium against a real `tessera up`.

One `tessera up` serves every browser test of a pytest(-xdist) worker: starting one takes 15–45 s,
far longer than most tests. Tests are kept apart by giving each its own account instead:

- `live_server`  the shared server's base URL ("http://127.0.0.1:<port>"); resets the fake Replicate.
- `live_user`    a new account for this test (`.name`, `.password`, `.dataset_root`: the user's own
                 dataset folder, which the test may fill); the test's jobs must end before the next test.
- `logged_in`    the `page`, logged in as `live_user` on `live_server`, at "/".
- `live_data_dir` the shared server's data folder (outputs of every test: tell yours apart by its rows).
- `fresh_server` a `tessera up` of the test's own, on the test's `app_env` (set keys in `app_env`
                 before it starts), with the account `ada`: for tests that restart, kill or reconfigure
                 the server. `logged_in_fresh` is the page logged in there as `ada`.

The shared server runs with TESSERA_LORA_POLL_SECONDS=1 (LoRA trainings look again every second), on
SQLite and a private Redis of its own. A test that needs other settings uses `fresh_server`.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.app_helpers import TEST_PASSWORD
from tests.live import free_port, wait_until_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Seconds a test's jobs get to end after the test before the next test may start.
JOBS_END_SECONDS = 60
# Settings of the shared server that differ from a default `tessera up`.
SHARED_SETTINGS = {"TESSERA_LORA_POLL_SECONDS": "1"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = "Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("TESSERA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Browser tests are required here, but {reason}.")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def start_server(env: dict) -> tuple[subprocess.Popen, str]:
    """`tessera up` with one web and one job worker on a free port; returns the process and base URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "1",
                                "--web-workers", "1"], env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, process)
    except BaseException:
        stop_server(process)
        raise
    return process, base_url


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(2)  # Ctrl+C
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@dataclass(frozen=True)
class LiveUser:
    name: str
    password: str
    dataset_root: Path  # the default dataset root, DATA_DIR/datasets/<name>: this user's own folders


class SharedServer:
    """The one `tessera up` of this worker, and an app on its database for accounts and job checks."""

    def __init__(self, data_dir: Path, fake_replicate_server):
        self.data_dir = data_dir
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") and not key.startswith("TESSERA_")}
        self.env.update({
            "TESSERA_DATA_DIR": str(data_dir),
            "REPLICATE_API_TOKEN": fake_replicate_server.token,
            "REPLICATE_API_BASE": fake_replicate_server.base_url,
            "TESSERA_DOWNLOAD_HOSTS": "127.0.0.1",
            "TESSERA_ALLOW_HTTP_DOWNLOADS": "1",
            **SHARED_SETTINGS,
        })
        self._numbers = itertools.count(1)
        self.process, self.url = start_server(self.env)
        with pytest.MonkeyPatch.context() as patch:  # the app reads its settings from the environment
            for key in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY"):
                patch.delenv(key, raising=False)
            patch.setenv("TESSERA_DATA_DIR", str(data_dir))
            from app import create_app

            self.app = create_app()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the shared tessera up exited with code {self.process.returncode} (an earlier test "
                        "stopped it? such a test needs fresh_server)")

    def new_user(self) -> LiveUser:
        from app.auth.accounts import create_user
        from app.extensions import db

        name = f"user{next(self._numbers)}"
        with self.app.app_context():
            create_user(name, TEST_PASSWORD)
            db.session.remove()
        return LiveUser(name, TEST_PASSWORD, self.data_dir / "datasets" / name)

    def active_jobs(self, username: str) -> list[str]:
        """Titles and states of `username`'s jobs that have not ended."""
        from app.extensions import db
        from app.models import Job, User

        with self.app.app_context():
            rows = db.session.execute(
                db.select(Job.title, Job.status).join(User, User.id == Job.user_id)
                .where(User.username == username, Job.status.not_in(Job.ENDED))).all()
            db.session.remove()
        return [f"{title!r} ({status})" for title, status in rows]

    def stop(self) -> None:
        with self.app.app_context():
            from app.extensions import db

            db.engine.dispose()
        stop_server(self.process)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory, fake_replicate_server):
    server = SharedServer(tmp_path_factory.mktemp("live") / "data", fake_replicate_server)
    yield server
    server.stop()


@pytest.fixture
def live_server(request, shared_server, fake_replicate):
    """The shared server's base URL; the fake Replicate is reset for this test."""
    if "app_env" in request.fixturenames:
        pytest.fail("The shared live_server does not run on the test's app_env: use live_user.dataset_root "
                    "or live_data_dir for its folders, or fresh_server for a server on app_env.")
    shared_server.check_alive()
    return shared_server.url


@pytest.fixture
def live_data_dir(shared_server) -> Path:
    return shared_server.data_dir


@pytest.fixture
def live_user(shared_server):
    """A new account on the shared server; after the test, waits until its jobs have ended."""
    user = shared_server.new_user()
    yield user
    deadline = time.monotonic() + JOBS_END_SECONDS
    while (active := shared_server.active_jobs(user.name)) and time.monotonic() < deadline:
        time.sleep(0.25)
    if active:
        pytest.fail(f"{user.name}'s jobs did not end within {JOBS_END_SECONDS} s of the test: {', '.join(active)}")


def log_in(page, base_url: str, username: str, password: str = TEST_PASSWORD):
    page.goto(f"{base_url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")
    return page


@pytest.fixture
def logged_in(page, live_server, live_user):
    return log_in(page, live_server, live_user.name, live_user.password)


@pytest.fixture
def fresh_server(app_env):
    """`tessera up` of this test alone, on `app_env`, with an account `ada`; yields its base URL."""
    env = {**os.environ, **app_env}
    subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "ada"], input=TEST_PASSWORD + "\n",
                   text=True, env=env, check=True, capture_output=True)
    process, base_url = start_server(env)
    yield base_url
    stop_server(process)


@pytest.fixture
def logged_in_fresh(page, fresh_server):
    return log_in(page, fresh_server, "ada")
