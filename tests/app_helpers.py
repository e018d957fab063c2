"""Helpers for tests that need an app, an account or a logged-in client (fixtures are in conftest)."""
from __future__ import annotations

from contextlib import contextmanager

from flask import g
from redis import Redis

from app import create_app
from app.auth.ratelimit import KEY_PREFIX, KNOWN_PREFIX
from app.extensions import db
from app.models import User

TEST_PASSWORD = "correct horse battery"


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


def make_user(username: str = "ada") -> User:
    user = User(username=username)
    user.set_password(TEST_PASSWORD)
    db.session.add(user)
    db.session.commit()
    return user


def log_in(client, user: User):
    """Make `client` carry a session for `user`, as a successful login would."""
    with client.session_transaction() as session:
        session["_user_id"] = user.get_id()
        session["_fresh"] = True
    return client


def forget_login_failures(redis: Redis) -> None:
    """Drop every failed-login counter (they live in the session's shared Redis)."""
    keys = list(redis.scan_iter(f"{KEY_PREFIX}:*")) + list(redis.scan_iter(f"{KNOWN_PREFIX}:*"))
    if keys:
        redis.delete(*keys)
