"""Use as input: any gallery image or canvas picture goes into an image input of Generate, and from
there to the model as a file; another user's images cannot be used."""
from __future__ import annotations

import base64
import io

from PIL import Image

from app.extensions import db
from app.gallery import Generation
from app.models import Job
from tests.app_helpers import log_in, make_user

KONTEXT = "black-forest-labs/flux-kontext-pro"
NANO = "google/nano-banana"


def creates(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


def a_generation(client, run_jobs) -> Generation:
    client.post("/generate", data={"model": "black-forest-labs/flux-schnell", "prompt": "a red door"})
    run_jobs()
    return db.session.scalar(db.select(Generation).order_by(Generation.id.desc()))


def colour_of(data_uri: str):
    with Image.open(io.BytesIO(base64.b64decode(data_uri.partition(",")[2]))) as image:
        return image.convert("RGB").getpixel((0, 0))


def test_use_as_input_opens_generate_with_the_image_in_an_image_input(client, run_jobs, fake_replicate):
    generation = a_generation(client, run_jobs)
    page = client.get(f"/?use=generation:{generation.id}").get_data(as_text=True)
    assert f'<option value="{KONTEXT}" selected' in page  # an editing model when none was asked for
    assert f'name="input_image" value="generation:{generation.id}"' in page
    assert f'src="/generations/{generation.id}.png"' in page  # its preview
    page = client.get(f"/?use=generation:{generation.id}&model={NANO}").get_data(as_text=True)
    assert f'name="image_input" value="generation:{generation.id}"' in page

    response = client.post("/generate", data={"model": KONTEXT, "prompt": "make it blue",
                                              "input_image": f"generation:{generation.id}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    sent = creates(fake_replicate)[-1].json["input"]["input_image"]
    with Image.open(io.BytesIO(client.get(f"/generations/{generation.id}.png").data)) as original:
        assert colour_of(sent) == original.convert("RGB").getpixel((0, 0))


def test_several_gallery_images_and_links_keep_their_order(client, run_jobs, fake_replicate):
    first = a_generation(client, run_jobs)
    second = a_generation(client, run_jobs)
    link = fake_replicate.publish("ref.png", _png((1, 2, 3)), "image/png")
    response = client.post("/generate", data={"model": NANO, "prompt": "combine",
                                              "image_input": [f"generation:{second.id}", link,
                                                              f"generation:{first.id}"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    sent = creates(fake_replicate)[-1].json["input"]["image_input"]
    assert len(sent) == 3 and sent[1] == link
    assert sent[0].startswith("data:image/png;base64,") and sent[2].startswith("data:image/png;base64,")
    job = db.session.scalar(db.select(Job).order_by(Job.created_at.desc()))
    assert "base64" not in str(job.params)  # the job keeps paths and links, not the images


def test_another_users_image_cannot_be_used(client, run_jobs, app, fake_replicate):
    generation = a_generation(client, run_jobs)
    intruder = log_in(app.test_client(), make_user("eve"))
    response = intruder.post("/generate", data={"model": KONTEXT, "prompt": "mine now",
                                                "input_image": f"generation:{generation.id}"})
    assert response.status_code == 422
    assert "not found" in response.get_data(as_text=True).lower()
    page = intruder.get(f"/?use=generation:{generation.id}")
    assert page.status_code == 404


def test_a_canvas_picture_is_sent_as_a_png(client, run_jobs, fake_replicate, user):
    import numpy as np

    from tests.canvas_helpers import make_canvas, paint

    canvas = make_canvas(user)
    pixels = np.zeros((40, 60, 4), dtype=np.uint8)
    pixels[...] = (250, 120, 0, 255)
    paint(canvas, 10, 20, pixels)
    response = client.post("/generate", data={"model": KONTEXT, "prompt": "as a poster",
                                              "input_image": f"canvas:{canvas.id}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(db.select(Job).order_by(Job.created_at.desc()))
    assert job.status == Job.SUCCEEDED, job.error
    sent = creates(fake_replicate)[-1].json["input"]["input_image"]
    with Image.open(io.BytesIO(base64.b64decode(sent.partition(",")[2]))) as image:
        assert image.size == (60, 40) and image.convert("RGB").getpixel((5, 5)) == (250, 120, 0)
    picker = client.get("/generate/picker?field=input_image").get_data(as_text=True)
    assert f'data-value="canvas:{canvas.id}"' in picker


def test_the_picker_lists_the_users_gallery(client, run_jobs):
    generation = a_generation(client, run_jobs)
    picker = client.get("/generate/picker?field=image_input").get_data(as_text=True)
    assert f'data-value="generation:{generation.id}"' in picker and "data-close" in picker


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return buffer.getvalue()
