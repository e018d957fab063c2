"""Every route needs a login, and another user's objects are not found (404), with nothing changed.

OWNED_ROUTES checks both sides (the owner gets it, another user gets 404) for the routes listed; the
URL-map test below gives every route that takes a job, generation, canvas or dataset id to another
user, so routes added later are covered without being listed.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from app import PUBLIC_ENDPOINTS
from app.extensions import db
from app.models import Job
from tests.app_helpers import log_in, make_user
from tests.security_helpers import owned_objects, snapshot

# (method, url with {job_id}/{generation_id} placeholders for the owner's objects)
OWNED_ROUTES = [
    ("GET", "/jobs/{job_id}/status"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("POST", "/jobs/{job_id}/retry"),
    ("GET", "/generations/{generation_id}.png"),
    ("GET", "/generations/{generation_id}.png?download=1"),
    ("GET", "/?from={generation_id}"),
    ("GET", "/gallery/{generation_id}"),
]


@pytest.fixture
def intruder(app):
    return log_in(app.test_client(), make_user("eve"))


@pytest.mark.parametrize("method,url", OWNED_ROUTES)
def test_another_users_object_is_not_found_and_stays_as_it_was(app, user, client, intruder, method, url):
    values = owned_objects(user, app.config["DATA_DIR"])
    if "retry" in url:  # only an ended job can be retried: make it one, so the refusal is about the owner
        db.session.get(Job, values["job_id"]).status = Job.FAILED
        db.session.commit()
    target = url.format(**values)
    before = snapshot(app.config["DATA_DIR"])
    response = intruder.open(target, method=method)
    assert response.status_code == 404
    assert "a fox" not in response.get_data(as_text=True)
    assert snapshot(app.config["DATA_DIR"]) == before
    assert client.open(target, method=method).status_code == 200  # the owner gets it


def all_owned_objects(user, app) -> dict[str, object]:
    """One of each kind of object a user owns, by the URL argument that names it."""
    from app.canvas.models import Canvas
    from app.datasets.models import Dataset

    values = owned_objects(user, app.config["DATA_DIR"])
    folder = Path(str(app.config["DATASET_ROOTS"][0]).replace("{user}", user.username)) / "mine"
    folder.mkdir(parents=True)
    canvas, dataset = Canvas(user_id=user.id, name="a fox", settings={}), Dataset(user_id=user.id, name="a fox",
                                                                                   root=str(folder))
    db.session.add_all([canvas, dataset])
    db.session.commit()
    return {**values, "canvas_id": canvas.id, "dataset_id": dataset.id}


def test_every_route_with_an_object_id_hides_another_users_object(app, user, intruder):
    values = all_owned_objects(user, app)
    adapter = app.url_map.bind("localhost")
    before = snapshot(app.config["DATA_DIR"])
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments & values.keys():
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            # Ids of things inside the object (an image, a variation) are made up: the owner check comes first.
            url = adapter.build(rule.endpoint, {name: values.get(name, 1) for name in rule.arguments}, method=method)
            response = intruder.open(url, method=method, data={"name": "mine now", "prompt": "a fox"})
            assert response.status_code == 404, (method, url, response.status_code)
            assert "a fox" not in response.get_data(as_text=True), (method, url)
            checked.append(url)
    assert snapshot(app.config["DATA_DIR"]) == before
    for prefix in ("/jobs/", "/generations/", "/canvas/", "/datasets/"):
        assert any(url.startswith(prefix) for url in checked), prefix


def test_lists_show_only_the_users_own_objects(app, user, intruder):
    all_owned_objects(user, app)
    for url in ("/gallery", "/jobs/", "/", "/canvas/", "/datasets/"):
        assert "a fox" not in intruder.get(url).get_data(as_text=True), url


def test_every_route_but_the_public_ones_needs_a_login(app, user):
    values = owned_objects(user, app.config["DATA_DIR"])
    adapter = app.url_map.bind("localhost")
    anonymous = app.test_client()
    checked = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url = adapter.build(rule.endpoint, {name: values.get(name, 1) for name in rule.arguments}, method=method)
            response = anonymous.open(url, method=method)
            assert response.status_code == 302 and response.headers["Location"].startswith("/login"), (method, url)
            checked.append(url)
    assert "/gallery" in checked and f"/generations/{values['generation_id']}.png" in checked
    assert PUBLIC_ENDPOINTS == {"auth.login", "auth.setup", "static", "favicon", "health", "errors.too_large",
                                "webhooks.replicate"}
