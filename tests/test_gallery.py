"""The gallery: search and model filter, the detail view, thumbnails, delete, open on a canvas; the
jobs page's names, links, times and state filter; the favicon."""
from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.canvas.models import Canvas
from app.extensions import db
from app.gallery import Generation
from app.gallery.browse import THUMB_SIDE, thumbnail_relpath
from app.models import Job, utcnow
from tests.app_helpers import log_in, make_user
from tests.canvas_helpers import make_canvas, noise, paint, read

SCHNELL, DEV = "black-forest-labs/flux-schnell", "black-forest-labs/flux-dev"


def add_image(app, user, prompt, *, model=SCHNELL, size=(96, 64), params=None, job=None, seed=7,
              in_gallery=True, pixels=None) -> Generation:
    """A gallery image with a real PNG file, as save_generation leaves one."""
    generation = Generation(user_id=user.id, job_id=job.id if job else None, model_ref=model, prompt=prompt,
                            params={"prompt": prompt, "seed": seed, **(params or {})}, seed=seed,
                            path="", width=size[0], height=size[1], in_gallery=in_gallery)
    db.session.add(generation)
    db.session.flush()
    generation.path = f"outputs/2026/11/{uuid.uuid4().hex}-0.png"  # as save_generation names them: by job
    path = Path(app.config["DATA_DIR"]) / generation.path
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels) if pixels is not None else Image.new("RGB", size, (200, 40, 40))
    image.save(path)
    db.session.commit()
    return generation


def ids_on(page: str, pattern=r'class="thumb" href="/gallery/(\d+)') -> list[int]:
    return [int(found) for found in re.findall(pattern, page)]


def test_search_by_prompt_words_and_filter_by_model(app, user, client):
    fox = add_image(app, user, "A red Fox in snow")
    owl = add_image(app, user, "an owl at night", model=DEV)
    percent = add_image(app, user, "100% cotton, fox_print")
    add_image(app, make_user("eve"), "a fox of someone else")
    add_image(app, user, "a fox on a canvas, not kept", in_gallery=False)

    assert ids_on(client.get("/gallery").get_data(as_text=True)) == [percent.id, owl.id, fox.id]
    assert ids_on(client.get("/gallery?q=FOX").get_data(as_text=True)) == [percent.id, fox.id]  # any case
    assert ids_on(client.get("/gallery?q=fox snow").get_data(as_text=True)) == [fox.id]  # every word
    # LIKE's wildcards typed by the user are literal characters.
    assert ids_on(client.get("/gallery?q=100%25").get_data(as_text=True)) == [percent.id]
    assert ids_on(client.get("/gallery?q=%25").get_data(as_text=True)) == [percent.id]
    assert ids_on(client.get("/gallery?q=fox_").get_data(as_text=True)) == [percent.id]
    page = client.get(f"/gallery?model={DEV}").get_data(as_text=True)
    assert ids_on(page) == [owl.id] and "1 image found" in page
    # The model filter offers the models the gallery holds, by their names.
    assert f'<option value="{DEV}" selected>FLUX.1 [dev]</option>' in page
    assert "No image matches" in client.get("/gallery?q=zebra").get_data(as_text=True)


def test_pages_of_the_gallery(app, user, client):
    images = [add_image(app, user, f"image {n}") for n in range(60)]
    first = client.get("/gallery").get_data(as_text=True)
    assert ids_on(first) == [g.id for g in reversed(images)][:56] and "page=2" in first
    second = client.get("/gallery?page=2").get_data(as_text=True)
    assert ids_on(second) == [g.id for g in reversed(images)][56:]


def test_the_detail_view_shows_everything_that_made_the_image(app, user, client):
    job = Job(id="j" * 32, user_id=user.id, kind="generate.image", task="t", title="t", status=Job.SUCCEEDED,
              params={}, result={}, created_at=utcnow() - timedelta(seconds=40),
              started_at=utcnow() - timedelta(seconds=30), finished_at=utcnow() - timedelta(seconds=5),
              predict_time=12.34)
    db.session.add(job)
    db.session.commit()
    generation = add_image(app, user, "a lighthouse at dusk", model=DEV, job=job, params={
        "negative_prompt": "blurry, text", "guidance": 3.5, "num_inference_steps": 28, "go_fast": True,
        "lora_weights": "https://huggingface.co/someone/lora", "lora_scale": 0.8})
    page = client.get(f"/gallery/{generation.id}").get_data(as_text=True)
    assert f'src="/generations/{generation.id}.png?v=' in page
    assert '<p class="gallery-prompt">a lighthouse at dusk</p>' in page
    assert '<p class="gallery-prompt">blurry, text</p>' in page  # the negative prompt
    assert f'FLUX.1 [dev]<br><code class="muted">{DEV}</code>' in page
    for name, value in (("Seed", "7"), ("Size", "96×64"), ("guidance", "3.5"), ("num_inference_steps", "28"),
                        ("go_fast", "yes"), ("lora_weights", "https://huggingface.co/someone/lora"),
                        ("lora_scale", "0.8"), ("Queued", "10 s"), ("Ran", "25 s"), ("On Replicate", "12 s")):
        assert f"<dt>{name}</dt><dd>{value}" in page, name
    assert page.index("<h2>LoRA</h2>") < page.index("<dt>lora_weights</dt>")
    assert ">Image generation</a>" in page
    # The actions: same settings, as an input, a canvas, a dataset, the file.
    assert f'href="/?from={generation.id}"' in page
    assert f'href="/?use=generation:{generation.id}"' in page
    assert 'action="/canvas/open-image"' in page
    assert f'href="/generations/{generation.id}.png?v=' in page and "download=1" in page
    assert f'action="/gallery/{generation.id}/delete"' in page


def test_newer_and_older_stay_within_the_search(app, user, client):
    a = add_image(app, user, "fox one")
    add_image(app, user, "owl")
    b = add_image(app, user, "fox two")
    c = add_image(app, user, "fox three")
    page = client.get(f"/gallery/{b.id}?q=fox").get_data(as_text=True)
    assert f'rel="prev" href="/gallery/{c.id}?q=fox"' in page
    assert f'rel="next" href="/gallery/{a.id}?q=fox"' in page
    oldest = client.get(f"/gallery/{a.id}?q=fox").get_data(as_text=True)
    assert 'rel="next"' not in oldest and 'rel="prev"' in oldest


def test_thumbnails_keep_the_aspect_ratio_and_are_small(app, user, client):
    wide = add_image(app, user, "wide", size=(1344, 576))
    small = add_image(app, user, "small", size=(200, 300))
    response = client.get(f"/generations/{wide.id}/thumb.webp")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert "immutable" in response.headers["Cache-Control"]
    with Image.open(io.BytesIO(response.data)) as thumb:
        assert thumb.size == (THUMB_SIDE, round(THUMB_SIDE * 576 / 1344))
    with Image.open(io.BytesIO(client.get(f"/generations/{small.id}/thumb.webp").data)) as thumb:
        assert thumb.size == (200, 300)  # never enlarged
    assert (Path(app.config["DATA_DIR"]) / thumbnail_relpath(wide)).is_file()
    # An unreadable file has no thumbnail, and no error page either.
    (Path(app.config["DATA_DIR"]) / small.path).write_bytes(b"not a png")
    (Path(app.config["DATA_DIR"]) / thumbnail_relpath(small)).unlink()
    assert client.get(f"/generations/{small.id}/thumb.webp").status_code == 404
    intruder = log_in(app.test_client(), make_user("eve"))
    assert intruder.get(f"/generations/{wide.id}/thumb.webp").status_code == 404


def test_delete_removes_the_row_and_the_files_then_shows_the_next_image(app, user, client):
    older = add_image(app, user, "fox old")
    add_image(app, user, "owl")
    doomed = add_image(app, user, "fox new")
    client.get(f"/generations/{doomed.id}/thumb.webp")
    files = [Path(app.config["DATA_DIR"]) / doomed.path, Path(app.config["DATA_DIR"]) / thumbnail_relpath(doomed)]
    assert all(path.is_file() for path in files)
    intruder = log_in(app.test_client(), make_user("eve"))
    assert intruder.post(f"/gallery/{doomed.id}/delete").status_code == 404
    assert all(path.is_file() for path in files)

    response = client.post(f"/gallery/{doomed.id}/delete", data={"q": "fox"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/gallery/{older.id}?q=fox"  # the next one of the same search
    assert db.session.get(Generation, doomed.id) is None
    assert not any(path.exists() for path in files)
    assert client.get(f"/gallery/{doomed.id}").status_code == 404
    # The last one leads back to the grid.
    last = client.post(f"/gallery/{older.id}/delete", data={"q": "fox"})
    assert last.headers["Location"] == "/gallery?q=fox"


def test_a_deleted_id_used_again_gets_new_image_urls(app, user, client):
    first = add_image(app, user, "first")
    page = client.get(f"/gallery/{first.id}").get_data(as_text=True)
    url = re.search(r'src="(/generations/\d+\.png\?v=\w+)"', page).group(1)
    client.post(f"/gallery/{first.id}/delete")
    second = add_image(app, user, "second")
    page = client.get(f"/gallery/{second.id}").get_data(as_text=True)
    assert url not in page  # an immutable cached copy of the deleted image is never shown


def test_open_on_a_new_canvas(app, user, client):
    pixels = noise(96, 64, seed=3, channels=3)
    generation = add_image(app, user, "a harbour at noon", size=(96, 64), pixels=pixels)
    response = client.post("/canvas/open-image", data={"generation_id": generation.id, "canvas_id": "new"})
    assert response.status_code == 303
    canvas = db.session.scalar(db.select(Canvas))
    assert response.headers["Location"] == f"/canvas/{canvas.id}?show=1"
    assert canvas.name == "a harbour at noon" and canvas.user_id == user.id
    placed = read(canvas, 0, 0, 96, 64)
    assert np.array_equal(placed[..., :3], pixels) and (placed[..., 3] == 255).all()
    assert canvas.settings["frame"] == [0, 0, 96, 64]


def test_open_beside_what_an_existing_canvas_holds(app, user, client):
    canvas = make_canvas(user)
    before = noise(300, 200, seed=1, alpha=255)
    paint(canvas, -50, 10, before)
    pixels = noise(128, 128, seed=2, channels=3)
    generation = add_image(app, user, "a boat", size=(128, 128), pixels=pixels)
    response = client.post("/canvas/open-image", data={"generation_id": generation.id, "canvas_id": str(canvas.id)})
    assert response.headers["Location"] == f"/canvas/{canvas.id}?show=1"
    assert np.array_equal(read(canvas, -50, 10, 300, 200), before)  # untouched
    x = 320  # 250 (content's right edge) + 64, up to the 64 px grid
    assert np.array_equal(read(canvas, x, 0, 128, 128)[..., :3], pixels)
    db.session.refresh(canvas)
    assert canvas.settings["frame"] == [x, 0, 128, 128]
    # Another user's canvas or image is not found.
    other = make_canvas(make_user("eve"))
    assert client.post("/canvas/open-image", data={"generation_id": generation.id,
                                                   "canvas_id": str(other.id)}).status_code == 404
    intruder = log_in(app.test_client(), db.session.get(type(user), other.user_id))
    assert intruder.post("/canvas/open-image", data={"generation_id": generation.id,
                                                     "canvas_id": "new"}).status_code == 404
    assert db.session.scalar(db.select(db.func.count(Canvas.id))) == 2


def make_job(user, kind, status, *, params=None, result=None, seconds=(0, 3, 20), predict_time=None, title="t"):
    created = utcnow() - timedelta(seconds=60)
    at = lambda s: None if s is None else created + timedelta(seconds=s)  # noqa: E731
    job = Job(id=uuid.uuid4().hex, user_id=user.id, kind=kind, task="t", title=title,
              status=status, params=params or {}, result=result or {}, created_at=created,
              started_at=at(seconds[1]), finished_at=at(seconds[2]) if status in Job.ENDED else None,
              predict_time=predict_time, message="Step 3 of 28" if status == Job.RUNNING else "")
    db.session.add(job)
    db.session.commit()
    return job


def test_the_jobs_page_names_links_times_and_filters(app, user, client):
    generation = add_image(app, user, "a fox")
    make_job(user, "generate.image", Job.SUCCEEDED, result={"generations": [generation.id]}, predict_time=2.25,
             title="a fox")
    make_job(user, "canvas.generate", Job.FAILED, result={"canvas_id": 5}, title="Canvas: a sea")
    make_job(user, "datasets.caption", Job.RUNNING, params={"dataset_id": 9}, title="Caption faces")
    page = client.get("/jobs/").get_data(as_text=True)
    assert "canvas.generate" not in page and "generate.image" not in page.replace('"generate.image"', "")
    for name in ("Image generation", "Canvas generation", "Auto-caption"):
        assert f"<td>{name}</td>" in page
    assert f'<a href="/gallery/{generation.id}">1 image</a>' in page
    assert '<a href="/canvas/5">Its canvas</a>' in page and '<a href="/datasets/9">Its dataset</a>' in page
    assert '<td class="num">3.0 s</td>' in page and '<td class="num">17 s</td>' in page  # queued, ran
    assert '<td class="num">2.2 s</td>' in page  # Replicate's predict_time
    assert "Step 3 of 28" in page
    # A running job keeps the rows live; the state filter narrows them.
    assert 'hx-get="/jobs/rows" hx-trigger="every 2s"' in page
    failed = client.get("/jobs/?state=failed").get_data(as_text=True)
    assert "Canvas: a sea" in failed and "a fox" not in failed and "Caption faces" not in failed
    assert 'hx-trigger="every 2s"' not in failed  # nothing listed runs: no polling
    assert "hx-trigger" not in client.get("/jobs/rows?state=succeeded").get_data(as_text=True).split("<tr")[0]
    assert "Caption faces" in client.get("/jobs/rows?state=active").get_data(as_text=True)
    assert "No failed jobs" not in failed and "No canceled jobs." in client.get("/jobs/?state=canceled").get_data(as_text=True)


def test_the_status_line_of_each_phase(app, user, client):
    queued = make_job(user, "generate.image", Job.QUEUED, seconds=(0, None, None), title="q")
    running = make_job(user, "generate.image", Job.RUNNING, title="r")
    done = make_job(user, "generate.image", Job.SUCCEEDED, title="d")
    done.message = "2 images"
    db.session.commit()

    def line(job):
        html = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
        return " ".join(re.sub(r"<[^>]+>", " ", re.search(r'<p class="job-line">(.*?)</p>', html, re.S).group(1)).split())

    assert re.fullmatch(r"Queued 1:0\d", line(queued))
    assert re.fullmatch(r"Step 3 of 28 0:5\d", line(running))  # started 3 s after its creation 60 s ago
    assert line(done) == "Done · 2 images 0:17"
    html = client.get(f"/jobs/{queued.id}/status").get_data(as_text=True)
    assert "%" not in html and "value=" not in html  # an indeterminate bar while queued, no "· 0%"


def test_favicon_is_served_without_a_login(app):
    response = app.test_client().get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    with Image.open(io.BytesIO(response.data)) as icon:
        assert icon.format == "ICO"
    page = app.test_client().get("/login").get_data(as_text=True)
    assert '<link rel="icon" href="/static/favicon.ico"' in page


@pytest.mark.parametrize("url", ["/", "/gallery", "/jobs/"])
def test_pages_keep_htmx_from_settling_inline_styles(client, url):
    page = client.get(url).get_data(as_text=True)
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'", page).group(1)
    import json

    settings = json.loads(config)
    assert "style" not in settings["attributesToSettle"] and settings["includeIndicatorStyles"] is False


def test_use_as_input_opens_generate_with_the_image_in_an_image_input(app, user, client):
    generation = add_image(app, user, "a fox in snow", model=SCHNELL)
    detail = client.get(f"/gallery/{generation.id}").get_data(as_text=True)
    link = re.search(r'href="([^"]+)">Use as input<', detail).group(1)
    page = client.get(link.replace("&amp;", "&")).get_data(as_text=True)
    # Generate's "use as input" (helper models' mechanism): the image is already chosen in an image input.
    chosen = re.findall(r'<input type="hidden" name="(\w+)" value="generation:(\d+)">', page)
    assert [int(found) for _, found in chosen] == [generation.id]
    intruder = log_in(app.test_client(), make_user("eve"))
    assert intruder.get(link.replace("&amp;", "&")).status_code == 404


def test_an_images_page_marks_gallery_in_the_navigation(app, user, client):
    generation = add_image(app, user, "a fox")
    page = client.get(f"/gallery/{generation.id}").get_data(as_text=True)
    assert page.count('aria-current="page"') == 1
    assert '<a href="/gallery" aria-current="page">Gallery</a>' in page
