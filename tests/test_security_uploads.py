"""Hostile uploads: oversized requests and images, decompression bombs, malformed multipart bodies.
Each is refused with a message and leaves no row and no file behind.

UPLOAD_ROUTES lists the routes that take an image (canvas and dataset uploads join as they land).
"""
from __future__ import annotations

import io

import pytest
from PIL import Image

from app import create_app
from app.extensions import db
from app.models import Job
from tests.security_helpers import snapshot, token_of

# (url, the image field, the other fields a valid request has, the page with the form)
UPLOAD_ROUTES = [
    ("/generate", "image", {"model": "black-forest-labs/flux-dev", "prompt": "a fox"},
     "/?model=black-forest-labs/flux-dev"),
]


def png(width: int, height: int, *, noise: bool = False) -> bytes:
    image = Image.effect_noise((width, height), 100).convert("RGB") if noise else Image.new("RGB", (width, height))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def post_image(client, route, data: bytes, **headers):
    url, field, fields, _page = route
    return client.post(url, data={**fields, field: (io.BytesIO(data), "upload.png")},
                       content_type="multipart/form-data", headers=headers)


def jobs_count() -> int:
    return db.session.scalar(db.select(db.func.count(Job.id)))


def open_form(client, route) -> None:
    """Show the form first, as a user does: that caches the model's options, so the snapshots compare
    only what the upload changes."""
    assert client.get(route[3]).status_code == 200


@pytest.mark.parametrize("route", UPLOAD_ROUTES, ids=lambda route: route[0])
def test_a_request_over_the_upload_limit_gets_the_friendly_413(app, client, route):
    app.config["MAX_CONTENT_LENGTH"] = 256 * 1024
    big = png(600, 600, noise=True)
    assert len(big) > 256 * 1024
    open_form(client, route)
    before = snapshot(app.config["DATA_DIR"])
    page = post_image(client, route, big)
    assert page.status_code == 413 and "larger than this server accepts" in page.get_data(as_text=True)
    assert "<html" in page.get_data(as_text=True)
    partial = post_image(client, route, big, **{"HX-Request": "true"})
    assert partial.status_code == 413 and "<html" not in partial.get_data(as_text=True)
    assert snapshot(app.config["DATA_DIR"]) == before


@pytest.mark.parametrize("route", UPLOAD_ROUTES, ids=lambda route: route[0])
def test_an_image_over_the_image_limit_is_refused(app, client, route):
    app.config["MAX_IMAGE_UPLOAD_BYTES"] = 64 * 1024
    open_form(client, route)
    before = snapshot(app.config["DATA_DIR"])
    response = post_image(client, route, png(300, 300, noise=True))
    assert response.status_code == 422 and "larger than" in response.get_data(as_text=True)
    assert snapshot(app.config["DATA_DIR"]) == before


@pytest.mark.parametrize("route", UPLOAD_ROUTES, ids=lambda route: route[0])
def test_an_image_with_more_pixels_than_allowed_is_refused(app, client, route, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    create_app({"MAX_IMAGE_PIXELS": 10_000})  # sets the limit for the whole process, as each process does
    open_form(client, route)
    before = snapshot(app.config["DATA_DIR"])
    refused = post_image(client, route, png(101, 100))  # 8 kB of file, but one pixel row too many
    assert refused.status_code == 422 and "too many pixels" in refused.get_data(as_text=True)
    assert snapshot(app.config["DATA_DIR"]) == before
    assert post_image(client, route, png(100, 100)).status_code == 200  # exactly the limit is fine
    assert jobs_count() == 1


MALFORMED = {
    "truncated": b'--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na fox',
    "unterminated file": (b'--B\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
                          b"Content-Type: image/png\r\n\r\n" + png(8, 8)),
    "garbage": bytes(range(256)) * 8,
    "headers without colons": b"--B\r\nContent-Disposition form-data name=prompt\r\n\r\na fox\r\n--B--\r\n",
    "no boundary in the body": b'Content-Disposition: form-data; name="prompt"\r\n\r\na fox',
}


@pytest.mark.parametrize("body", MALFORMED, ids=list(MALFORMED))
@pytest.mark.parametrize("route", UPLOAD_ROUTES, ids=lambda route: route[0])
@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=B", "multipart/form-data"])
def test_a_malformed_multipart_body_is_refused_and_changes_nothing(csrf_app, csrf_client, route, body, content_type):
    open_form(csrf_client, route)
    token = token_of(csrf_client)  # in the header, as HTMX sends it: the body is all that is wrong
    before = snapshot(csrf_app.config["DATA_DIR"])
    response = csrf_client.post(route[0], data=MALFORMED[body], content_type=content_type,
                                headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert response.status_code in (400, 422), response.status_code
    assert snapshot(csrf_app.config["DATA_DIR"]) == before
