"""Fixtures: a real private Redis, the fake Replicate server, an app per test with its own data folder."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
from flask import g
from rq import SimpleWorker

from app import create_app
from app.extensions import db
from app.models import User
from app.redis_server import PrivateRedis
from tests.fake_replicate import FakeReplicate

TEST_PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    with PrivateRedis(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server


@pytest.fixture(scope="session")
def fake_replicate_server():
    with FakeReplicate() as fake:
        yield fake


@pytest.fixture
def fake_replicate(fake_replicate_server):
    fake_replicate_server.reset()
    return fake_replicate_server


@pytest.fixture
def app_env(tmp_path, monkeypatch, redis_server, fake_replicate):
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
    if os.environ.get("TESSERA_TEST_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["TESSERA_TEST_DATABASE_URL"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    if "DATABASE_URL" not in env:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    return env


@contextmanager
def app_with_fresh_db(app_env: dict, **overrides):
    """An app on empty tables, its context held open for the test's own db access."""
    app = create_app({"TESTING": True, **overrides})
    # Requests inside the held context share `g`; a real request starts without the previous
    # request's user and CSRF token.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_afresh)
    with app.app_context():
        db.drop_all()
        db.create_all()
        yield app
        db.session.remove()
        if "DATABASE_URL" in app_env:
            db.drop_all()
        db.engine.dispose()


def _start_afresh() -> None:
    g.pop("_login_user", None)
    g.pop("csrf_token", None)


@pytest.fixture
def app(app_env):
    with app_with_fresh_db(app_env, WTF_CSRF_ENABLED=False, JOB_STALE_SECONDS=90) as app:
        yield app


def make_user(username: str = "ada") -> User:
    user = User(username=username)
    user.set_password(TEST_PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


def log_in(client, user: User):
    """Make `client` carry a session for `user`, as a successful login would."""
    with client.session_transaction() as session:
        session["_user_id"] = str(user.id)
        session["_fresh"] = True
    return client


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
        SimpleWorker([app.task_queue], connection=app.redis).work(burst=True, logging_level="WARNING")
        db.session.expire_all()

    return run
