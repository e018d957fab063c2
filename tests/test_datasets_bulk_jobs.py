"""Dataset-wide edits as jobs: every bulk action (and Health's fixes and merges) through the
``datasets.bulk`` job, streamed in small chunks, one undoable batch, undone by a ``datasets.undo`` job."""
from pathlib import Path

import pytest

from app.datasets import history
from app.datasets.models import CaptionBatch, CaptionEdit, DatasetImage, DatasetTag
from app.extensions import db
from app.models import Job
from tests.datasets_helpers import image_named, make_folder, open_dataset

CAPTIONS = {
    "a.png": "tok, 1girl, long hair, smile",
    "b.png": "tok, 1girl, short hair, hat",
    "c.png": "1boy, long_hair, smile, smile",
    "d.png": None,
    "e.png": "1girl, hat",
}


@pytest.fixture
def dataset(client, run_jobs, app, monkeypatch):
    # Every edit goes to a job, and is read and written two captions at a time (several chunks).
    app.config["DATASET_BULK_INLINE_LIMIT"] = 0
    monkeypatch.setattr(history, "BULK_CHUNK", 2)
    return open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))


def files(dataset) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(Path(dataset.root).glob("*.txt"))}


def tag_rows(dataset) -> dict[str, set[str]]:
    rows = db.session.execute(db.select(DatasetImage.relpath, DatasetTag.tag).join(DatasetTag)
                              .where(DatasetImage.dataset_id == dataset.id)).all()
    found: dict[str, set[str]] = {}
    for relpath, tag in rows:
        found.setdefault(relpath, set()).add(tag)
    return found


def bulk_jobs() -> list[Job]:
    return db.session.scalars(db.select(Job).where(Job.kind.in_(["datasets.bulk", "datasets.undo"]))
                              .order_by(Job.created_at)).all()


def post_and_run(client, run_jobs, dataset, url, data) -> Job:
    before = {job.id for job in bulk_jobs()}
    response = client.post(url, data=data)
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    [job] = [job for job in bulk_jobs() if job.id not in before]
    assert job.status == "queued" and f'id="job-{job.id}"' in page  # the page shows it and polls it
    assert "as a job" in page
    run_jobs()
    db.session.refresh(job)
    return job


ACTIONS = [
    ({"action": "rename", "old": "smile", "new": "grin"},
     {"a.txt": "tok, 1girl, long hair, grin", "c.txt": "1boy, long_hair, grin, grin"}),
    ({"action": "delete", "old": "1girl"},
     {"a.txt": "tok, long hair, smile", "b.txt": "tok, short hair, hat", "e.txt": "hat"}),
    ({"action": "add", "tags": "solo, hat", "position": "end"},
     {"a.txt": "tok, 1girl, long hair, smile, solo, hat", "b.txt": "tok, 1girl, short hair, hat, solo",
      "c.txt": "1boy, long_hair, smile, smile, solo, hat", "d.txt": "solo, hat", "e.txt": "1girl, hat, solo"}),
    ({"action": "remove", "tags": "hat, smile"},
     {"a.txt": "tok, 1girl, long hair", "b.txt": "tok, 1girl, short hair", "c.txt": "1boy, long_hair",
      "e.txt": "1girl"}),
    ({"action": "replace", "find": r"(\w+) hair", "replace": r"\1-hair", "regex": "1"},
     {"a.txt": "tok, 1girl, long-hair, smile", "b.txt": "tok, 1girl, short-hair, hat"}),
    ({"action": "normalise", "normaliser": "underscores_to_spaces"}, {"c.txt": "1boy, long hair, smile, smile"}),
    ({"action": "normalise", "normaliser": "dedupe"}, {"c.txt": "1boy, long_hair, smile"}),
]


@pytest.mark.parametrize("data, changed", ACTIONS, ids=[a[0]["action"] + "-" + a[0].get("normaliser", "") for a in ACTIONS])
def test_every_bulk_action_runs_as_a_job_with_one_undo(client, run_jobs, dataset, data, changed):
    before = files(dataset)
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/bulk", data)
    assert job.status == "succeeded", job.error
    expected = {**before, **{name: text.encode() for name, text in changed.items()}}
    assert files(dataset) == expected
    # Rows and tag rows say what the files say.
    for name, data_bytes in expected.items():
        image = image_named(dataset, name.replace(".txt", ".png"))
        assert image.caption == data_bytes.decode()
        assert tag_rows(dataset).get(image.relpath, set()) == set(history.caption_tags(image.caption))
    [batch] = db.session.scalars(db.select(CaptionBatch)).all()
    assert batch.image_count == len(changed) == job.result["changed"]
    assert job.result["batch_id"] == batch.id and job.result["dataset_id"] == dataset.id
    assert db.session.scalar(db.select(db.func.count()).select_from(CaptionEdit)) == len(changed)
    status = client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert f"{len(changed)} caption" in status and f"/datasets/{dataset.id}/history" in status
    assert f"/datasets/{dataset.id}/grid" not in status  # not asked from the grid page: nothing swapped

    undo = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/history/{batch.id}/undo", {})
    assert undo.status == "succeeded" and undo.kind == "datasets.undo"
    assert files(dataset) == before  # byte for byte
    db.session.refresh(batch)
    assert batch.undone_at is not None
    assert image_named(dataset, "a.png").caption == CAPTIONS["a.png"]


def test_trigger_health_fix_and_merge_run_as_jobs(client, run_jobs, app, dataset):
    client.post(f"/datasets/{dataset.id}/settings", data={"name": dataset.name, "trigger": "tok"})
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/bulk", {"action": "trigger"})
    assert job.status == "succeeded", job.error
    assert files(dataset)["c.txt"] == b"tok, 1boy, long_hair, smile, smile" and files(dataset)["e.txt"] == b"tok, 1girl, hat"

    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/health/merge",
                       {"into": "long hair", "variants": ["long_hair"]})
    assert job.status == "succeeded", job.error
    assert files(dataset)["c.txt"] == b"tok, 1boy, long hair, smile, smile"

    bom = Path(dataset.root) / "b.txt"
    bom.write_bytes(b"\xef\xbb\xbftok, 1girl, short hair, hat")
    client.post(f"/datasets/{dataset.id}/rescan")
    run_jobs()
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/health/fix", {"problem": "bom"})
    assert job.status == "succeeded", job.error
    assert bom.read_bytes() == b"tok, 1girl, short hair, hat" and job.result["changed"] == 1


def test_a_caption_changed_on_disk_after_the_job_was_queued_is_left_alone(client, run_jobs, dataset):
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "solo"})
    assert response.status_code == 303
    theirs = Path(dataset.root) / "b.txt"
    theirs.write_text("edited elsewhere", encoding="utf-8")  # after the scan, before the worker runs
    run_jobs()
    [job] = bulk_jobs()
    assert job.status == "succeeded"
    assert theirs.read_text() == "edited elsewhere"
    assert job.result["conflicts"] == ["b.png"] and job.result["conflicts_total"] == 1
    assert job.result["changed"] == 4 and (Path(dataset.root) / "a.txt").read_text().endswith(", solo")
    assert "1 skipped because they changed on disk" in job.message
    assert "b.png" in client.get(f"/jobs/{job.id}/status").get_data(as_text=True)


def test_a_pattern_that_backtracks_fails_the_job_before_any_file_is_written(client, run_jobs, app, monkeypatch):
    app.config["DATASET_BULK_INLINE_LIMIT"] = 0
    monkeypatch.setattr(history, "BULK_CHUNK", 2)
    names = {f"{n}.png": ("a" * 30 + "!" if n == 3 else f"tag {n}") for n in range(6)}
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=names))
    before = files(dataset)
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "(a|aa)+$", "replace": "x", "regex": "1"})
    run_jobs()
    [job] = bulk_jobs()
    assert job.status == "failed" and "backtracks" in job.error
    assert files(dataset) == before
    assert db.session.scalar(db.select(db.func.count()).select_from(CaptionBatch)) == 0


def test_an_uncertain_encoding_is_left_byte_identical_by_the_job(client, run_jobs, app, monkeypatch):
    app.config["DATASET_BULK_INLINE_LIMIT"] = 0
    odd = "ÄÖ".encode("cp1252") + b"x"  # too short for any detector to be sure of
    dataset = open_dataset(client, run_jobs, make_folder(app, captions={"a.png": "one", "b.png": odd}))
    assert "encoding_uncertain" in image_named(dataset, "b.png").caption_problems
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "smile"})
    run_jobs()
    [job] = bulk_jobs()
    assert (Path(dataset.root) / "b.txt").read_bytes() == odd
    assert (Path(dataset.root) / "a.txt").read_text() == "one, smile"
    assert job.result["uncertain"] == ["b.txt"] and "encoding is uncertain" in job.message


def test_small_edits_answer_in_the_request(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=CAPTIONS))
    assert app.config["DATASET_BULK_INLINE_LIMIT"] == 1000
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "hat", "new": "cap"})
    assert (Path(dataset.root) / "b.txt").read_text() == "tok, 1girl, short hair, cap"  # already written
    assert "2 captions changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert bulk_jobs() == []


def test_the_filtered_and_selected_scopes_reach_the_job(client, run_jobs, dataset):
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/bulk",
                       {"action": "add", "tags": "picked", "scope": "filtered", "q": "hat AND NOT tok"})
    assert job.status == "succeeded" and job.result["changed"] == 1
    assert files(dataset)["e.txt"] == b"1girl, hat, picked"
    ids = [str(image_named(dataset, n).id) for n in ("a.png", "d.png")]
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/bulk",
                       {"action": "add", "tags": "chosen", "scope": "selected", "ids": ids})
    assert job.status == "succeeded" and job.result["changed"] == 2
    assert files(dataset)["d.txt"] == b"chosen" and files(dataset)["a.txt"].endswith(b", chosen")
    assert files(dataset)["b.txt"] == CAPTIONS["b.png"].encode()


def test_no_undo_while_an_edit_of_the_dataset_is_still_running(client, run_jobs, dataset):
    job = post_and_run(client, run_jobs, dataset, f"/datasets/{dataset.id}/bulk", {"action": "delete", "old": "hat"})
    [batch] = db.session.scalars(db.select(CaptionBatch)).all()
    after = files(dataset)
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "solo"})  # queued, not run yet
    response = client.post(f"/datasets/{dataset.id}/history/{batch.id}/undo")
    assert "still running" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert files(dataset) == after and job.status == "succeeded"
    assert [j.kind for j in bulk_jobs()] == ["datasets.bulk", "datasets.bulk"]  # no undo job queued


@pytest.mark.parametrize("stop", ["progress", "edit"])
def test_an_edit_stopped_midway_records_every_caption_it_wrote(client, run_jobs, app, monkeypatch, stop):
    # Files of one chunk are written while the chunk before is recorded: whatever stops the edit
    # (a cancel between chunks, an edit failing on a caption), no file is left changed unrecorded.
    monkeypatch.setattr(history, "BULK_CHUNK", 2)
    names = {f"{n}.png": f"tok, tag {n}" for n in range(9)}
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=names))
    before = files(dataset)

    def edit(caption: str) -> str:
        if stop == "edit" and caption == "tok, tag 6":
            raise ValueError("stopped")
        return caption + ", solo"

    def on_progress(done: int) -> None:
        if stop == "progress" and done >= 4:
            raise RuntimeError("canceled")

    with pytest.raises((ValueError, RuntimeError)):
        history.edit_captions(dataset, None, edit, root=Path(dataset.root), data_dir=Path(app.config["DATA_DIR"]),
                              user_id=dataset.user_id, description="add solo", on_progress=on_progress)
    changed = {name for name, data in files(dataset).items() if data != before[name]}
    assert len(changed) == (4 if stop == "progress" else 6)  # every chunk read before the stop, written
    [batch] = db.session.scalars(db.select(CaptionBatch)).all()
    assert batch.image_count == len(changed)
    for name in before:
        image = image_named(dataset, name.replace(".txt", ".png"))
        on_disk = (Path(dataset.root) / name).read_text()
        assert image.caption == on_disk and tag_rows(dataset)[image.relpath] == set(on_disk.split(", "))
    history.undo_batch(dataset, batch, root=Path(dataset.root), data_dir=Path(app.config["DATA_DIR"]),
                       user_id=dataset.user_id)
    assert files(dataset) == before
