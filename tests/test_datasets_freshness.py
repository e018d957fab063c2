"""Captions changed outside Tessera (an editor, a tagging script) are noticed: opening the dataset
queues a stat-based check that re-reads only the files that moved; the editor re-reads its caption."""
import os
from datetime import timedelta
from pathlib import Path

from app.datasets.models import Dataset
from app.extensions import db
from app.models import Job, utcnow
from tests.datasets_helpers import image_named, make_folder, open_dataset

CAPTIONS = {"a.png": "tok, 1girl, smile", "b.png": "tok, hat", "c.png": "tok, 1boy", "d.png": None}


def age(dataset: Dataset, seconds: int = 60) -> None:
    """As if the last scan were `seconds` old (the check runs at most every 30 s)."""
    db.session.get(Dataset, dataset.id).scanned_at = utcnow() - timedelta(seconds=seconds)
    db.session.commit()


def checks() -> list[Job]:
    db.session.expire_all()
    return db.session.scalars(db.select(Job).where(Job.kind == "datasets.check").order_by(Job.created_at)).all()


def tag_panel(client, dataset) -> str:
    return client.get(f"/datasets/{dataset.id}/tags").get_data(as_text=True)


def test_opening_the_dataset_reads_captions_changed_on_disk(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    root = Path(dataset.root)
    assert "smile" in tag_panel(client, dataset)  # the counts are cached in this process from here on
    (root / "a.txt").write_text("tok, 1girl, grin, from wd14", encoding="utf-8")  # edited
    (root / "b.txt").unlink()  # deleted
    (root / "d.txt").write_text("tok, new caption", encoding="utf-8")  # added
    (root / "c.txt").write_bytes("tok, 少女, 笑顔, 1boy".encode("shift_jis"))  # re-encoded by a Windows tool

    client.get(f"/datasets/{dataset.id}")  # scanned a moment ago: no check yet
    assert checks() == []
    age(dataset)
    page = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    [job] = checks()
    assert job.status == "queued" and f'id="job-{job.id}"' in page  # shown, polled
    client.get(f"/datasets/{dataset.id}")
    assert len(checks()) == 1  # one at a time
    run_jobs()
    [job] = checks()
    assert job.status == "succeeded" and job.result["captions"] == 4

    assert image_named(dataset, "a.png").caption == "tok, 1girl, grin, from wd14"
    assert image_named(dataset, "b.png").caption is None and image_named(dataset, "b.png").tag_count == 0
    assert image_named(dataset, "d.png").caption == "tok, new caption"
    assert image_named(dataset, "c.png").caption == "tok, 少女, 笑顔, 1boy"
    panel = tag_panel(client, dataset)
    assert "smile" not in panel and "hat" not in panel and "grin" in panel and "少女" in panel
    assert client.get(f"/datasets/{dataset.id}/grid?q=grin").get_data(as_text=True).count('class="ds-cell') == 1
    # The ended check, shown on the grid page, fills the grid and the tag panel in place.
    status = client.get(f"/jobs/{job.id}/status", headers={"HX-Current-URL": f"http://localhost/datasets/{dataset.id}"})
    assert f"/datasets/{dataset.id}/tags" in status.get_data(as_text=True)


def test_the_check_reads_only_captions_whose_size_or_mtime_moved(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    root = Path(dataset.root)
    sneaky = root / "a.txt"
    info = sneaky.stat()
    sneaky.write_text("tok, 1girl, grin!", encoding="utf-8")  # same size ...
    assert sneaky.stat().st_size == info.st_size
    os.utime(sneaky, ns=(info.st_atime_ns, info.st_mtime_ns))  # ... and mtime put back: no stat moved
    age(dataset)
    client.get(f"/datasets/{dataset.id}")
    run_jobs()
    assert checks()[-1].result["captions"] == 0
    assert image_named(dataset, "a.png").caption == "tok, 1girl, smile"  # not read: the check is stat-based
    # The Rescan button reads every caption whatever the clocks say.
    client.post(f"/datasets/{dataset.id}/rescan")
    run_jobs()
    assert image_named(dataset, "a.png").caption == "tok, 1girl, grin!"
    # A nothing-changed check keeps every stored stat, so the next one reads nothing either.
    age(dataset)
    client.get(f"/datasets/{dataset.id}")
    run_jobs()
    assert checks()[-1].result["captions"] == 0 and checks()[-1].status == "succeeded"


def test_captions_tessera_wrote_are_not_read_again_and_edits_after_them_are(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "solo"})
    image = image_named(dataset, "a.png")
    path = Path(dataset.root) / "a.txt"
    assert (image.caption_size, image.caption_mtime_ns) == (path.stat().st_size, path.stat().st_mtime_ns)
    path.write_text("tok, 1girl, smile, solo, outdoors", encoding="utf-8")
    age(dataset)
    client.get(f"/datasets/{dataset.id}")
    run_jobs()
    assert checks()[-1].result["captions"] == 1
    assert image_named(dataset, "a.png").caption == "tok, 1girl, smile, solo, outdoors"


def test_the_editor_reads_a_caption_changed_on_disk_and_the_counts_follow(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    assert "hat" in tag_panel(client, dataset)
    image = image_named(dataset, "b.png")
    (Path(dataset.root) / "b.txt").write_text("tok, cap, outdoors", encoding="utf-8")
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}").get_data(as_text=True)
    assert "tok, cap, outdoors" in page
    assert image_named(dataset, "b.png").caption == "tok, cap, outdoors"
    panel = tag_panel(client, dataset)  # the cached counts were dropped: not "hat 1"
    assert "outdoors" in panel and ">hat<" not in panel
