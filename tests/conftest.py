"""Fixtures: a real private Redis, the fake Replicate server, an app per test with its own data folder,
a CSRF-protected app and client. Helpers (no fixtures) live in tests/*_helpers.py."""
from __future__ import annotations

import os
import uuid

import pytest
from rq import SimpleWorker

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.extensions import db
from app.redis_server import PrivateRedis
from tests.app_helpers import app_with_fresh_db, log_in, make_user
from tests.fake_replicate import FakeReplicate


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    with PrivateRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server


@pytest.fixture(scope="session")
def fake_replicate_server():
    with FakeReplicate() as fake:
        yield fake


@pytest.fixture(scope="session")
def database_url():
    """TESSERA_TEST_DATABASE_URL (a server database such as PostgreSQL), or None for a SQLite file per test.

    Under pytest-xdist each worker gets its own database on that server, `<name>_<worker id>`, created
    here and dropped at the end: the tests drop and create all tables, so two workers must not share one."""
    base = os.environ.get("TESSERA_TEST_DATABASE_URL")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not base or not worker:
        yield base
        return
    url = make_url(base)
    name = f"{url.database}_{worker}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def fake_replicate(fake_replicate_server):
    fake_replicate_server.reset()
    return fake_replicate_server


@pytest.fixture
def app_env(tmp_path, monkeypatch, redis_server, fake_replicate, database_url):
    """The environment a Tessera process of this test runs with (also handed to subprocesses)."""
    env = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_server.url,
        "TESSERA_QUEUE": f"test-{uuid.uuid4().hex[:8]}",
        "REPLICATE_API_TOKEN": fake_replicate.token,
        "REPLICATE_API_BASE": fake_replicate.base_url,
        "TESSERA_DOWNLOAD_HOSTS": "127.0.0.1",
        "TESSERA_ALLOW_HTTP_DOWNLOADS": "1",
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    if "DATABASE_URL" not in env:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    return env


@pytest.fixture
def app(app_env):
    # The fake Replicate advances a prediction per poll, not per second: no need to wait 0.5–2 s between.
    with app_with_fresh_db(app_env, WTF_CSRF_ENABLED=False, JOB_STALE_SECONDS=90,
                           REPLICATE_POLL_SECONDS=(0.01, 0.05)) as app:
        yield app


@pytest.fixture
def user(app):
    return make_user()


@pytest.fixture
def client(app, user):
    """A test client logged in as `user`."""
    return log_in(app.test_client(), user)


@pytest.fixture
def run_jobs(app):
    """Run every queued job to the end in this process, like one worker with --burst."""

    def run() -> None:
        SimpleWorker([app.interactive_queue, app.task_queue], connection=app.redis).work(
            burst=True, logging_level="WARNING")
        db.session.expire_all()

    return run


@pytest.fixture
def csrf_app(app_env):
    """An app as it runs in production: CSRF protection on."""
    with app_with_fresh_db(app_env, WTF_CSRF_ENABLED=True) as app:
        yield app


@pytest.fixture
def owner(csrf_app):
    return make_user()


@pytest.fixture
def csrf_client(csrf_app, owner):
    return log_in(csrf_app.test_client(), owner)
