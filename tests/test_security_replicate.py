"""Outputs are fetched only over https, only from the allowed hosts, never through a redirect, and
never when they are decompression bombs: a job that meets one fails with the reason and keeps nothing."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from app import create_app
from app.extensions import db
from app.gallery import Generation
from app.models import Job

FLUX = "black-forest-labs/flux-schnell"  # the fake answers with one 512x512 PNG


def generate_and_fail(client, run_jobs, app) -> Job:
    assert client.post("/generate", data={"model": FLUX, "prompt": "a fox"}).status_code == 200
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED
    assert db.session.scalar(db.select(db.func.count(Generation.id))) == 0
    assert not list((Path(app.config["DATA_DIR"]) / "outputs").rglob("*.png"))
    return job


def output_fetches(fake_replicate):
    return fake_replicate.requests_to("GET", "/files/out/")


def test_an_output_on_a_host_not_allowed_is_not_fetched(client, run_jobs, app, fake_replicate):
    app.config["REPLICATE_DOWNLOAD_HOSTS"] = ["replicate.delivery"]
    job = generate_and_fail(client, run_jobs, app)
    assert "127.0.0.1 is not one of the allowed download hosts" in job.error
    assert output_fetches(fake_replicate) == []


def test_an_output_over_plain_http_is_not_fetched(client, run_jobs, app, fake_replicate):
    app.config["REPLICATE_ALLOW_HTTP_DOWNLOADS"] = False
    job = generate_and_fail(client, run_jobs, app)
    assert "not https" in job.error
    assert output_fetches(fake_replicate) == []


def test_a_redirecting_output_is_not_followed(client, run_jobs, app, fake_replicate):
    fake_replicate.fail_next(302, path_prefix="/files/out/")
    job = generate_and_fail(client, run_jobs, app)
    assert "does not follow redirects" in job.error
    assert len(output_fetches(fake_replicate)) == 1


def test_an_output_with_more_pixels_than_allowed_is_refused(client, run_jobs, app, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    create_app({"MAX_IMAGE_PIXELS": 512 * 512 - 1})
    job = generate_and_fail(client, run_jobs, app)
    assert "not an image Tessera can read" in job.error


def test_an_output_at_the_pixel_limit_is_kept(client, run_jobs, app, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    create_app({"MAX_IMAGE_PIXELS": 512 * 512})
    client.post("/generate", data={"model": FLUX, "prompt": "a fox"})
    run_jobs()
    assert db.session.scalar(db.select(Job)).status == Job.SUCCEEDED
