"""Accounts: logging in and out, rate-limited login attempts, `tessera user create`, safe redirects."""
import os
import subprocess
import sys

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app import create_app
from app.extensions import db
from app.models import User
from tests.app_helpers import TEST_PASSWORD, forget_login_failures


@pytest.fixture(autouse=True)
def clean_login_counts(redis_server):
    """The counters live in the session's shared Redis: no test may leave another a lockout."""
    redis = Redis.from_url(redis_server.url)
    forget_login_failures(redis)
    yield
    forget_login_failures(redis)


def log_in(client, username="ada", password=TEST_PASSWORD, address="127.0.0.1", **query):
    return client.post("/login", query_string=query, data={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def is_logged_in(client) -> bool:
    return client.get("/").status_code == 200


def test_logging_in_and_out(app, user):
    client = app.test_client()
    assert not is_logged_in(client)
    wrong = log_in(client, password="wrong password")
    assert wrong.status_code == 401 and "Wrong username or password." in wrong.get_data(as_text=True)
    assert not is_logged_in(client)
    response = log_in(client)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert is_logged_in(client)
    assert client.get("/logout").status_code == 405  # a link or an image cannot log anyone out
    assert client.post("/logout").status_code == 302
    assert not is_logged_in(client)


def test_logins_still_work_when_redis_is_down(app, user):
    app.redis = Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    client = app.test_client()
    assert log_in(client, password="guess").status_code == 401
    assert log_in(client).status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example/x", "/\t/evil.example/x",
                                    "https://evil.example/x", "javascript:alert(1)"])
def test_after_login_only_paths_on_this_site_are_followed(app, user, target):
    response = log_in(app.test_client(), next=target)
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_after_login_the_page_asked_for_is_shown(app, user):
    assert log_in(app.test_client(), next="/gallery?page=2").headers["Location"] == "/gallery?page=2"


def test_an_htmx_request_after_the_session_ended_sends_the_page_to_the_login(app, user):
    response = app.test_client().get("/jobs/x/status", headers={"HX-Request": "true",
                                                                "HX-Current-URL": "http://localhost/gallery"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/gallery"
    assert response.get_data() == b""


def test_the_first_account_page_is_refused_through_a_proxy(app):
    client = app.test_client()
    response = client.post("/setup", data={"username": "mallory", "password": "x" * 12},
                           headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 403 and "tessera user create" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(User.id))) == 0


def test_tessera_user_create_reads_the_password_from_stdin(app_env, tmp_path, monkeypatch):
    # Its own SQLite file: the command applies the migrations to a database of its own making.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    env = {**os.environ}

    def create(name, password):
        return subprocess.run([sys.executable, "-m", "app.cli", "user", "create", name], input=password + "\n",
                              text=True, env=env, capture_output=True)

    made = create("grace", "a long passphrase")
    assert made.returncode == 0 and "Created user grace." in made.stdout
    assert create("grace", "another passphrase").returncode != 0
    short = create("linus", "short")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        assert [u.username for u in db.session.scalars(db.select(User))] == ["grace"]
        assert log_in(app.test_client(), username="grace", password="a long passphrase").status_code == 302
        db.session.remove()
        db.engine.dispose()


def test_a_form_sent_after_the_session_ended_leads_back_to_its_page_after_the_login(app, user):
    """Logged out in another tab, then "New canvas" in this one: after the login the user sees the page
    the form was on, not a 405 from the form's POST-only address."""
    client = app.test_client()
    response = client.post("/canvas/", data={"name": "c"}, headers={"Referer": "http://localhost/canvas/?x=1"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=%2Fcanvas%2F%3Fx%3D1"
    after = log_in(client, next="/canvas/?x=1")
    assert after.headers["Location"] == "/canvas/?x=1" and client.get(after.headers["Location"]).status_code == 200


@pytest.mark.parametrize("referrer", [None, "https://evil.example/x"])
def test_a_form_sent_after_the_session_ended_without_its_page_leads_home(app, user, referrer):
    headers = {"Referer": referrer} if referrer else {}
    response = app.test_client().post("/generate", data={"prompt": "a fox"}, headers=headers)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert log_in(app.test_client()).headers["Location"] == "/"


def test_a_page_asked_for_after_the_session_ended_is_shown_after_the_login(app, user):
    response = app.test_client().get("/gallery?page=2")
    assert response.headers["Location"] == "/login?next=%2Fgallery%3Fpage%3D2"
