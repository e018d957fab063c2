"""Tag rows follow captions: a scan or check syncs only the images whose captions it read again;
the Rescan button checks every image's tag rows (in chunks) and repairs any that drifted."""
from datetime import timedelta
from pathlib import Path

from app.datasets import index
from app.datasets.models import Dataset, DatasetTag
from app.extensions import db
from app.models import Job, utcnow
from tests.datasets_helpers import image_named, make_folder, open_dataset

CAPTIONS = {"a.png": "tok, 1girl, smile", "b.png": "tok, hat", "c.png": "tok, 1boy", "d.png": None}


def tags_of(image_id: int) -> set[str]:
    return set(db.session.scalars(db.select(DatasetTag.tag).where(DatasetTag.image_id == image_id)))


def drift(dataset: Dataset, relpath: str, tags: list[str]) -> int:
    """Replace an image's tag rows with `tags` behind the index's back (what a lost race left)."""
    image = image_named(dataset, relpath)
    db.session.execute(db.delete(DatasetTag).where(DatasetTag.image_id == image.id))
    for tag in tags:
        db.session.add(DatasetTag(image_id=image.id, tag=tag, dataset_id=dataset.id, key=tag))
    db.session.commit()
    return image.id


def last_job(kind: str) -> Job:
    db.session.expire_all()
    return db.session.scalars(db.select(Job).where(Job.kind == kind).order_by(Job.created_at.desc())).first()


def test_a_check_syncs_the_changed_captions_and_the_rescan_repairs_drifted_rows(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    root = Path(dataset.root)
    b_id = drift(dataset, "b.png", ["ghost"])
    (root / "a.txt").write_text("tok, 1girl, grin", encoding="utf-8")
    db.session.get(Dataset, dataset.id).scanned_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    client.get(f"/datasets/{dataset.id}")  # queues the check
    run_jobs()
    check = last_job("datasets.check")
    assert check.status == "succeeded" and check.result["captions"] == 1 and check.result["repaired"] == 0
    assert tags_of(image_named(dataset, "a.png").id) == {"tok", "1girl", "grin"}
    # The check read a.txt's tag rows only: b's drifted row waits for the Rescan.
    assert tags_of(b_id) == {"ghost"}

    assert client.post(f"/datasets/{dataset.id}/rescan").status_code == 303
    run_jobs()
    scan = last_job("datasets.scan")
    assert scan.status == "succeeded" and scan.result["repaired"] == 1
    assert "the tags of 1 images repaired" in scan.message
    assert tags_of(b_id) == {"tok", "hat"}
    assert tags_of(image_named(dataset, "a.png").id) == {"tok", "1girl", "grin"}
    assert image_named(dataset, "d.png").tag_count == 0 and tags_of(image_named(dataset, "d.png").id) == set()


def test_the_full_repair_walks_the_dataset_in_chunks(client, run_jobs, app):
    captions = {f"{n:02d}.png": f"tok, tag {n}, shared" for n in range(7)}
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=captions))
    # Drift in the first, a middle and the last chunk of 3: missing rows, extra rows, a wrong count.
    first = drift(dataset, "00.png", [])
    middle = drift(dataset, "04.png", ["tok", "tag 4", "shared", "extra"])
    last = image_named(dataset, "06.png")
    last.tag_count = 9
    db.session.commit()
    untouched = image_named(dataset, "02.png").id

    assert index.repair_tags(dataset.id, [untouched], chunk=3) == 0
    assert index.repair_tags(dataset.id, chunk=3) == 3
    db.session.commit()
    assert tags_of(first) == {"tok", "tag 0", "shared"}
    assert tags_of(middle) == {"tok", "tag 4", "shared"}
    assert image_named(dataset, "06.png").tag_count == 3
    assert index.repair_tags(dataset.id, chunk=3) == 0  # nothing left to repair
    # Images named by id are repaired whichever chunk they fall in; other datasets' ids are ignored.
    drift(dataset, "05.png", ["ghost"])
    assert index.repair_tags(dataset.id, [untouched, image_named(dataset, "05.png").id, 10_000], chunk=1) == 1
    db.session.commit()
    assert tags_of(image_named(dataset, "05.png").id) == {"tok", "tag 5", "shared"}
