"""Every output shape a paid prediction can come back in is kept and shown: images (URLs and data:
URIs, lists or one) in the gallery, text with the job, other files offered for download and played
where the browser can; what cannot be kept says why in a short sentence."""
from __future__ import annotations

import base64
import io
import struct
import wave

from PIL import Image

from app.extensions import db
from app.gallery import Generation
from app.gallery import OutputFile
from app.models import Job

DEV = "black-forest-labs/flux-dev"
NANO = "google/nano-banana"
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 4


def webp_uri(colour=(10, 200, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), colour).save(buffer, "WEBP", lossless=True)
    return "data:application/octet-stream;base64," + base64.b64encode(buffer.getvalue()).decode()


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(struct.pack("<200h", *range(200)))
    return buffer.getvalue()


def generate(client, run_jobs, model=DEV, **form) -> Job:
    response = client.post("/generate", data={"model": model, "prompt": "a fox", **form})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(db.select(Job).order_by(Job.created_at.desc()))
    db.session.refresh(job)
    return job


def status_of(client, job) -> str:
    return client.get(f"/jobs/{job.id}/status").get_data(as_text=True)


def test_data_uri_outputs_typed_octet_stream_over_webp_become_gallery_images(client, run_jobs, fake_replicate):
    fake_replicate.output_mode = "data-uri"
    job = generate(client, run_jobs, num_outputs="2")
    assert job.status == Job.SUCCEEDED, job.error
    generations = db.session.scalars(db.select(Generation).order_by(Generation.output_index)).all()
    assert len(generations) == 2
    with Image.open(io.BytesIO(client.get(f"/generations/{generations[0].id}.png").data)) as image:
        assert image.format == "PNG" and image.size == (512, 512)


def test_one_url_output_is_one_image(client, run_jobs):
    job = generate(client, run_jobs, model=NANO)
    assert job.status == Job.SUCCEEDED and job.result["generations"]
    assert db.session.scalar(db.select(db.func.count(Generation.id))) == 1


def test_text_and_tokens_are_shown_with_the_job_and_kept(client, run_jobs, fake_replicate):
    fake_replicate.next_output = ["A", " fox", " in", " snow", "."]
    job = generate(client, run_jobs)
    assert job.status == Job.SUCCEEDED, job.error
    [text] = db.session.scalars(db.select(OutputFile)).all()
    assert (text.kind, text.text) == ("text", "A fox in snow.")
    assert "A fox in snow." in status_of(client, job)


def test_an_object_with_an_image_and_text_keeps_both(client, run_jobs, fake_replicate):
    from tests.fake_replicate import png_bytes

    url = fake_replicate.publish("obj.png", png_bytes(Image.new("RGB", (20, 20), (1, 2, 3))), "image/png")
    fake_replicate.next_output = {"image": url, "caption": "a small square", "nsfw": False}
    job = generate(client, run_jobs)
    assert job.status == Job.SUCCEEDED, job.error
    assert db.session.scalar(db.select(db.func.count(Generation.id))) == 1
    status = status_of(client, job)
    assert "caption: a small square" in status and "nsfw: false" in status


def test_video_audio_and_archives_are_stored_and_offered(client, run_jobs, fake_replicate, app):
    video = fake_replicate.publish("clip.mp4", MP4, "application/octet-stream")
    audio = fake_replicate.publish("voice.wav", wav_bytes(), "audio/wav")
    archive = fake_replicate.publish("weights.zip", b"PK\x03\x04" + b"\x00" * 100, "application/zip")
    fake_replicate.next_output = [video, audio, archive]
    job = generate(client, run_jobs)
    assert job.status == Job.SUCCEEDED, job.error
    rows = db.session.scalars(db.select(OutputFile).order_by(OutputFile.id)).all()
    assert [(r.kind, r.content_type) for r in rows] == [
        ("video", "video/mp4"), ("audio", "audio/wav"), ("file", "application/zip")]
    status = status_of(client, job)
    assert f'<video controls src="/outputs/{rows[0].id}"' in status
    assert f'<audio controls src="/outputs/{rows[1].id}"' in status
    assert "returned a ZIP archive, which Tessera cannot show" in status and f'href="/outputs/{rows[2].id}?download=1"' in status
    response = client.get(f"/outputs/{rows[0].id}")
    assert response.status_code == 200 and response.data == MP4 and response.mimetype == "video/mp4"
    response = client.get(f"/outputs/{rows[2].id}?download=1")
    assert "attachment" in response.headers["Content-Disposition"]
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_another_users_output_files_are_not_found(client, run_jobs, fake_replicate, app):
    from tests.app_helpers import log_in, make_user

    fake_replicate.next_output = "just words"
    generate(client, run_jobs)
    row = db.session.scalar(db.select(OutputFile))
    intruder = log_in(app.test_client(), make_user("eve"))
    assert intruder.get(f"/outputs/{row.id}").status_code == 404


def test_a_100_mb_data_uri_output_fails_with_a_short_clear_message(client, run_jobs, fake_replicate):
    fake_replicate.next_output = "data:image/webp;base64," + "A" * (100 * 1024 * 1024 * 4 // 3)
    job = generate(client, run_jobs)
    assert job.status == Job.FAILED
    assert "about 100 MB" in job.error and len(job.error) < 400 and "AAAA" not in job.error
    assert job.prediction_id  # kept: a retry reuses the paid prediction
    assert "about 100 MB" in status_of(client, job)


def test_an_output_on_a_host_not_allowed_is_refused_and_the_rest_kept(client, run_jobs, fake_replicate):
    good = fake_replicate.publish("ok.png", _png(), "image/png")
    evil = "https://evil.example/" + "x" * 3000 + ".png"
    fake_replicate.next_output = [good, evil]
    job = generate(client, run_jobs)
    assert job.status == Job.SUCCEEDED
    assert db.session.scalar(db.select(db.func.count(Generation.id))) == 1
    [problem] = job.result["problems"]
    assert "evil.example is not one of the allowed download hosts" in problem and len(problem) < 500
    assert "evil.example is not one of the allowed download hosts" in status_of(client, job)

    fake_replicate.next_output = evil
    job = generate(client, run_jobs)
    assert job.status == Job.FAILED and "evil.example" in job.error and len(job.error) < 500


def test_a_model_that_returns_nothing_says_so(client, run_jobs, fake_replicate):
    fake_replicate.next_output = []
    job = generate(client, run_jobs)
    assert job.status == Job.FAILED and "returned nothing" in job.error


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_largest_output_kept_is_a_setting(client, run_jobs, fake_replicate, app):
    app.config["MAX_OUTPUT_BYTES"] = 1000
    fake_replicate.next_output = fake_replicate.publish("big.mp4", MP4 * 2, "video/mp4")
    job = generate(client, run_jobs)
    assert job.status == Job.FAILED and "larger than 0 MB" not in job.error
    assert "Tessera does not download files that big" in job.error
