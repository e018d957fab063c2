"""CSRF: every state-changing route refuses a request without the session's token, and changes nothing.

The routes are read from the app's URL map, so canvas and dataset routes are covered as they land.
"""
from __future__ import annotations

import re


from app.extensions import db
from app.models import Job
from tests.app_helpers import TEST_PASSWORD
from tests.security_helpers import owned_objects, snapshot, token_of

# Replicate cannot send a token: that route verifies a signature instead (tests/test_webhooks.py).
CSRF_EXEMPT = {"webhooks.replicate"}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_MESSAGE = "This form has expired or was not sent from a Tessera page"


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
