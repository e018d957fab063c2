"""CSRF: every state-changing route refuses a request without the session's token, and changes nothing.

The routes are read from the app's URL map, so canvas and dataset routes are covered as they land.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.extensions import db
from app.generate.models import Generation
from app.jobs.runner import enqueue_job
from app.models import Job, User
from tests.conftest import TEST_PASSWORD, app_with_fresh_db, log_in, make_user

# Replicate cannot send a token: that route verifies a signature instead (tests/test_webhooks.py).
CSRF_EXEMPT = {"webhooks.replicate"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_MESSAGE = "This form has expired or was not sent from a Tessera page"


def snapshot(data_dir: Path) -> tuple[dict, list]:
    """Every row of every table and every file in the data folder: what a refused request must leave as it was."""
    db.session.expire_all()
    rows = {table.name: sorted(repr(tuple(row)) for row in db.session.execute(table.select()))
            for table in db.metadata.sorted_tables}
    files = sorted((path.relative_to(data_dir).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
                   for path in Path(data_dir).rglob("*")
                   if path.is_file() and not path.name.startswith("tessera.db"))  # SQLite's own files
    return rows, files


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


def token_of(client, url: str = "/") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def owned_objects(user: User, data_dir: Path) -> dict[str, object]:
    """A queued job and a generation with its file: something for every route to change or delete."""
    job = enqueue_job(user_id=user.id, kind="generate", title="a fox", task="app.generate.tasks.run_generation",
                      params={"model": "black-forest-labs/flux-schnell", "input": {"prompt": "a fox"}})
    path = Path(data_dir) / "outputs" / "kept.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG kept")
    generation = Generation(user_id=user.id, job_id=job.id, model_ref="black-forest-labs/flux-schnell",
                            prompt="a fox", path="outputs/kept.png", width=1, height=1, seed=1)
    db.session.add(generation)
    db.session.commit()
    return {"job_id": job.id, "generation_id": generation.id}


def state_changing_urls(app, values: dict[str, object]) -> list[tuple[str, str]]:
    """(method, url) of every CSRF-protected route, its arguments filled from `values` (else 1)."""
    adapter = app.url_map.bind("localhost")
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in CSRF_EXEMPT:
            continue
        for method in sorted(rule.methods & STATE_CHANGING):
            arguments = {name: values.get(name, 1) for name in rule.arguments}
            urls.append((method, adapter.build(rule.endpoint, arguments, method=method)))
    return urls


def test_every_state_changing_route_refuses_a_request_without_the_token(csrf_app, csrf_client, owner):
    values = owned_objects(owner, csrf_app.config["DATA_DIR"])
    urls = state_changing_urls(csrf_app, values)
    assert ("POST", "/generate") in urls and ("POST", f"/jobs/{values['job_id']}/cancel") in urls
    before = snapshot(csrf_app.config["DATA_DIR"])
    for method, url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            response = csrf_client.open(url, method=method, headers=headers,
                                        data={"prompt": "a fox", "model": "black-forest-labs/flux-schnell"})
            page = response.get_data(as_text=True)
            assert response.status_code == 400, f"{method} {url} without a CSRF token gave {response.status_code}"
            assert CSRF_MESSAGE in page, f"{method} {url}: no friendly message"
            assert ("<html" in page) != bool(headers), f"{method} {url}: a page for browsers, a partial for HTMX"
    assert snapshot(csrf_app.config["DATA_DIR"]) == before
    assert db.session.get(Job, values["job_id"]).status == Job.QUEUED


def test_a_token_of_another_session_is_refused(csrf_app, csrf_client, owner):
    values = owned_objects(owner, csrf_app.config["DATA_DIR"])
    other_session = csrf_app.test_client()
    foreign = token_of(other_session, "/login")
    before = snapshot(csrf_app.config["DATA_DIR"])
    response = csrf_client.post(f"/jobs/{values['job_id']}/cancel", headers={"X-CSRFToken": foreign})
    assert response.status_code == 400
    assert snapshot(csrf_app.config["DATA_DIR"]) == before


def test_htmx_requests_carry_the_token_in_a_header(csrf_app, csrf_client, owner):
    values = owned_objects(owner, csrf_app.config["DATA_DIR"])
    page = csrf_client.get("/").get_data(as_text=True)
    token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
    response = csrf_client.post(f"/jobs/{values['job_id']}/cancel", headers={"X-CSRFToken": token,
                                                                            "HX-Request": "true"})
    assert response.status_code == 200
    assert db.session.get(Job, values["job_id"]).status == Job.CANCELED


def test_a_form_with_its_token_is_accepted(csrf_app, csrf_client):
    token = token_of(csrf_client)
    response = csrf_client.post("/generate", data={"csrf_token": token, "prompt": "a fox",
                                                   "model": "black-forest-labs/flux-schnell"})
    assert response.status_code == 200
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 1


def test_login_and_logout_need_the_token(csrf_app, owner):
    client = csrf_app.test_client()
    refused = client.post("/login", data={"username": "ada", "password": TEST_PASSWORD})
    assert refused.status_code == 400 and client.get("/").status_code == 302
    token = token_of(client, "/login")
    assert client.post("/login", data={"username": "ada", "password": TEST_PASSWORD,
                                       "csrf_token": token}).status_code == 302
    assert client.post("/logout").status_code == 400  # another site cannot log the user out
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": token_of(client)}).status_code == 302
    assert client.get("/").status_code == 302
