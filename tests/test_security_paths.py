"""Path traversal: no URL and no stored path reaches a file outside what it may serve.

Every GET route with a text or path argument is tried with traversal payloads (read from the URL map,
so canvas tiles and dataset images are covered as they land); FILE_ROUTES are the routes that serve
files from the data folder, each with a way to point its stored path elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from werkzeug.exceptions import NotFound

from app.extensions import db
from app.files import data_path, send_data_file
from app.gallery import Generation
from tests.security_helpers import owned_objects, snapshot

SECRET = "TOP-SECRET-OUTSIDE-THE-DATA-FOLDER"
PAYLOADS = [
    "../../../../outside/secret.txt", "..%2F..%2F..%2F..%2Foutside%2Fsecret.txt", "%2e%2e/%2e%2e/%2e%2e/outside",
    "..\\..\\..\\outside\\secret.txt", "....//....//outside", "/etc/passwd", "%2Fetc%2Fpasswd", "..", "%2e%2e",
    "secret_key", "../secret_key", "..%00/secret_key", "%252e%252e%252fsecret_key",
]


def _generation_with_path(app, user, relpath: str) -> str:
    """A generation whose stored path was tampered with; returns its image URL."""
    values = owned_objects(user, app.config["DATA_DIR"])
    db.session.get(Generation, values["generation_id"]).path = relpath
    db.session.commit()
    return f"/generations/{values['generation_id']}.png"


# name -> makes an owned object whose stored file path is `relpath`, returns the URL that serves it
FILE_ROUTES = {"generation image": _generation_with_path}


@pytest.fixture
def outside(app) -> tuple[str, str]:
    """What must never be served: a file beside the data folder, and the session-signing key inside it."""
    data_dir = Path(app.config["DATA_DIR"])
    secret = data_dir.parent / "outside" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text(SECRET)
    return SECRET, (data_dir / "secret_key").read_text().strip()


def leaks(response, secrets) -> bool:
    body = response.get_data(as_text=True)
    return any(secret in body for secret in secrets) or "root:x:0:0" in body


def traversal_urls(app) -> list[str]:
    """Each GET route with each of its text/path arguments replaced by each payload, as a hand-made
    request would put it (the other arguments are 1)."""
    adapter = app.url_map.bind("localhost")
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        for argument in rule.arguments:
            try:
                template = adapter.build(rule.endpoint, {**{name: 1 for name in rule.arguments}, argument: "TRAVERSAL"})
            except ValueError:
                continue  # a number argument cannot carry a path
            urls += [template.replace("TRAVERSAL", payload) for payload in PAYLOADS]
    return urls


def test_traversal_in_any_url_argument_reaches_nothing(app, client, user, outside):
    owned_objects(user, app.config["DATA_DIR"])
    urls = traversal_urls(app)
    assert any(url.startswith("/static/") for url in urls) and any(url.startswith("/jobs/") for url in urls)
    before = snapshot(app.config["DATA_DIR"])
    for url in urls:
        response = client.get(url, follow_redirects=True)  # e.g. Werkzeug's 308 that merges "//"
        assert response.status_code in (400, 404), (url, response.status_code)
        anonymous = app.test_client().get(url)
        assert anonymous.status_code in (302, 308, 400, 404), (url, anonymous.status_code)
        assert not leaks(response, outside) and not leaks(anonymous, outside), url
    assert snapshot(app.config["DATA_DIR"]) == before


@pytest.mark.parametrize("route", FILE_ROUTES)
@pytest.mark.parametrize("stored", ["../outside/secret.txt", "/etc/passwd", "outputs/../../outside/secret.txt",
                                    "outputs/link-out/secret.txt", "outputs", ""])
def test_a_stored_path_that_leaves_the_data_folder_is_not_served(app, client, user, outside, route, stored):
    data_dir = Path(app.config["DATA_DIR"])
    (data_dir / "outputs").mkdir(exist_ok=True)
    os.symlink(data_dir.parent / "outside", data_dir / "outputs" / "link-out")
    url = FILE_ROUTES[route](app, user, stored)
    before = snapshot(data_dir)
    response = client.get(url)
    assert response.status_code == 404
    assert not leaks(response, outside)
    assert snapshot(data_dir) == before


@pytest.mark.parametrize("relpath", ["../x", "../../etc/passwd", "/etc/passwd", "a/../../x", "link-out/secret.txt"])
def test_data_path_refuses_anything_that_resolves_outside_the_data_folder(app, outside, relpath):
    data_dir = Path(app.config["DATA_DIR"])
    os.symlink(data_dir.parent / "outside", data_dir / "link-out")
    with app.test_request_context():
        with pytest.raises(NotFound):
            data_path(relpath)
        with pytest.raises(NotFound):
            send_data_file(relpath)
