"""Export and auto-caption jobs, end to end through the routes and the worker."""
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.models import CaptionBatch
from app.extensions import db
from app.models import Job
from tests.datasets_helpers import image_named, make_folder, open_dataset, save_image

BLIP = "salesforce/blip:2e1dddc8621f72155f24cf2e0adbde548458d3cab9f00c0139eea840d0ac4746"


@pytest.fixture
def dataset(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok, star \\(symbol\\)", "sub/b.png": "A woman in a field.", "c.png": None})
    save_image(folder / "big.png", "white", (1200, 600))
    (folder / "big.txt").write_text("large")
    return open_dataset(client, run_jobs, folder)


def export(client, run_jobs, dataset, **form):
    response = client.post(f"/datasets/{dataset.id}/export", data=form)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert 'hx-trigger="every 1s"' in response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.export").order_by(Job.created_at.desc()))
    assert job.status == Job.SUCCEEDED, job.error
    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    link = re.search(r'href="(/datasets/exports/[^"]+)"', status).group(1)
    download = client.get(link)
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    return download.data


def test_training_zip_for_civitai_and_replicate(client, run_jobs, dataset):
    data = export(client, run_jobs, dataset, format="training", trigger="tok", max_side="512", sequential="1",
                  strip_escapes="1")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        # Everything at the zip's root, in path order: a, big, c (no caption), sub/b.
        assert names == ["0001.png", "0001.txt", "0002.png", "0002.txt", "0003.png", "0004.png", "0004.txt"]
        texts = {archive.read(name).decode() for name in names if name.endswith(".txt")}
        assert texts == {"tok, star (symbol)", "tok, A woman in a field.", "tok, large"}
        # The big one was shrunk to 512 on its long side.
        with Image.open(io.BytesIO(archive.read("0002.png"))) as image:
            assert image.size == (512, 256)


def test_kohya_folder_and_metadata(client, run_jobs, dataset):
    data = export(client, run_jobs, dataset, format="kohya", trigger="mychar", class_token="woman", repeats="12")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert {name.rsplit("/", 1)[0] for name in archive.namelist()} == {"img/12_mychar woman"}
        assert archive.read("img/12_mychar woman/a.txt").decode() == "mychar, tok, star \\(symbol\\)"
    data = export(client, run_jobs, dataset, format="metadata", trigger="")
    metadata = json.loads(data)
    assert metadata["a"] == {"tags": "tok, star \\(symbol\\)"}
    assert metadata["sub/b"] == {"caption": "A woman in a field."}
    assert "c" not in metadata


def test_kohya_without_trigger_is_refused(client, dataset):
    response = client.post(f"/datasets/{dataset.id}/export", data={"format": "kohya", "trigger": ""})
    assert response.status_code == 422 and "trigger" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Job.id)).where(Job.kind == "datasets.export")) == 0


def test_export_of_someone_elses_job_is_404(client, run_jobs, dataset):
    export(client, run_jobs, dataset, format="training")
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.export"))
    assert client.get(f"/datasets/exports/{job.id}").status_code == 200
    scan = db.session.scalar(db.select(Job).where(Job.kind == "datasets.scan"))
    assert client.get(f"/datasets/exports/{scan.id}").status_code == 404  # not an export


def test_autocaption_suggests_then_accepts(client, run_jobs, dataset, fake_replicate):
    page = client.get(f"/datasets/{dataset.id}/autocaption").get_data(as_text=True)
    assert f'<option value="{BLIP}" selected>' in page
    response = client.post(f"/datasets/{dataset.id}/autocaption", data={"model": BLIP, "prefix": "tok", "suffix": ""},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200 and 'hx-trigger="every 1s"' in response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.caption"))
    assert job.status == Job.SUCCEEDED, job.error
    creates = [r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert len(creates) == 1  # only the uncaptioned image
    c = image_named(dataset, "c.png")
    assert c.suggestion == "tok, a green square"  # "Caption: " stripped, prefix added
    assert not (Path(dataset.root) / "c.txt").exists()  # a suggestion writes nothing

    page = client.get(f"/datasets/{dataset.id}/autocaption").get_data(as_text=True)
    assert "tok, a green square" in page
    client.post(f"/datasets/{dataset.id}/suggestions", data={"action": "accept"})
    assert (Path(dataset.root) / "c.txt").read_text() == "tok, a green square"
    c = image_named(dataset, "c.png")
    assert c.suggestion is None and c.caption == "tok, a green square"
    assert db.session.scalar(db.select(CaptionBatch.kind)) == "suggestion"


def test_autocaption_of_selected_images_accepted_one_by_one(client, run_jobs, dataset, fake_replicate):
    a = image_named(dataset, "a.png")
    # The grid's bulk form posts the ticked images (a plain form post, back to the auto-caption page).
    response = client.post(f"/datasets/{dataset.id}/autocaption", data={"target": "selected", "ids": [str(a.id), "99999"],
                                                                        "scope": "all"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/datasets/{dataset.id}/autocaption")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Captioning 1 image" in page and 'class="job"' in page
    run_jobs()
    a = image_named(dataset, "a.png")
    assert a.suggestion == "a red square"  # the dataset has no trigger, so no prefix
    editor = client.get(f"/datasets/{dataset.id}/images/{a.id}").get_data(as_text=True)
    assert "Auto-caption suggestion:" in editor
    response = client.post(f"/datasets/{dataset.id}/images/{a.id}/suggestion", data={"action": "accept"})
    assert "Suggestion accepted" in response.get_data(as_text=True)
    assert (Path(dataset.root) / "a.txt").read_text() == "a red square"


def test_autocaption_failure_is_reported_per_image(client, run_jobs, dataset, fake_replicate):
    fake_replicate.next_outcome = "failed"
    client.post(f"/datasets/{dataset.id}/autocaption", data={"model": BLIP}, headers={"HX-Request": "true"})
    run_jobs()
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.caption"))
    assert job.status == Job.FAILED and "c.png" in job.error and "CUDA out of memory" in job.error
    assert image_named(dataset, "c.png").suggestion is None


def test_autocaption_needs_a_caption_model(client, dataset):
    response = client.post(f"/datasets/{dataset.id}/autocaption", data={"model": "black-forest-labs/flux-schnell"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 422 and "captioning model" in response.get_data(as_text=True)


def test_accepting_many_suggestions_streams_them_as_one_batch(client, run_jobs, app, monkeypatch):
    from app.datasets import history
    from app.datasets.models import CaptionEdit, DatasetImage

    monkeypatch.setattr(history, "BULK_CHUNK", 2)  # five suggestions read and written in three chunks
    names = {f"{n}.png": (f"old {n}" if n % 2 else None) for n in range(7)}
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=names))
    root = Path(dataset.root)
    (root / "3.txt").write_text("edited elsewhere", encoding="utf-8")  # its accept conflicts
    for n in range(1, 6):
        db.session.execute(db.update(DatasetImage).where(DatasetImage.dataset_id == dataset.id,
                                                         DatasetImage.relpath == f"{n}.png")
                           .values(suggestion=f"suggested {n}"))
    db.session.commit()
    client.post(f"/datasets/{dataset.id}/suggestions", data={"action": "accept"})
    assert {n: (root / f"{n}.txt").read_text() for n in range(1, 6)} == {
        1: "suggested 1", 2: "suggested 2", 3: "edited elsewhere", 4: "suggested 4", 5: "suggested 5"}
    [batch] = db.session.scalars(db.select(CaptionBatch)).all()
    assert batch.kind == "suggestion" and batch.image_count == 4 and batch.description == "Accept 5 auto-captions"
    assert db.session.scalar(db.select(db.func.count()).select_from(CaptionEdit)) == 4
    left = db.session.scalars(db.select(DatasetImage.relpath).where(DatasetImage.suggestion.is_not(None))).all()
    assert left == ["3.png"]  # the conflicting one waits for the user
    client.post(f"/datasets/{dataset.id}/suggestions", data={"action": "discard"})
    assert image_named(dataset, "3.png").suggestion is None
    history.undo_batch(dataset, batch, root=root, data_dir=Path(app.config["DATA_DIR"]), user_id=dataset.user_id)
    assert not (root / "2.txt").exists() and (root / "1.txt").read_text() == "old 1"
