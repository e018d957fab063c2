"""Issue 9's dataset kinds through the routes: bounded pages, confinement across roots and users,
any file name, hostile filters and patterns, and a rescan that repairs the index."""
import io
import os
import re
import zipfile

from app.datasets.models import CaptionBatch, Dataset, DatasetProgress, DatasetTag
from app.extensions import db
from app.models import Job
from tests.app_helpers import log_in, make_user
from tests.datasets_helpers import image_named, make_folder, open_dataset, save_image, user_root


def nested_not_or(depth: int) -> str:
    return "NOT (a OR " * depth + "a" + ")" * depth


def export_zip(client, run_jobs, dataset) -> zipfile.ZipFile:
    assert client.post(f"/datasets/{dataset.id}/export", data={"format": "training", "trigger": ""}).status_code == 200
    run_jobs()
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.export").order_by(Job.created_at.desc()))
    assert job.status == Job.SUCCEEDED, job.error
    return zipfile.ZipFile(io.BytesIO(client.get(f"/datasets/exports/{job.id}").data))


# --- user input parsers ------------------------------------------------------------------------


def test_deep_filter_in_a_link_is_a_clear_400_and_is_not_remembered(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    response = client.get(f"/datasets/{dataset.id}", query_string={"q": nested_not_or(150)})
    assert response.status_code == 400
    assert re.search("nests too deeply|more than 100 tags", response.get_data(as_text=True))
    assert client.get(f"/datasets/{dataset.id}/grid", query_string={"q": "(" * 150 + "a" + ")" * 150}).status_code == 400
    assert client.get(f"/datasets/{dataset.id}", query_string={"search": "x" * 10_000}).status_code == 400
    progress = db.session.scalar(db.select(DatasetProgress).where(DatasetProgress.dataset_id == dataset.id))
    assert progress is None or "q" not in progress.filters
    assert client.get(f"/datasets/{dataset.id}").status_code == 200


def test_deep_filter_in_a_bulk_post_changes_nothing(client, run_jobs, app):
    folder = make_folder(app)
    dataset = open_dataset(client, run_jobs, folder)
    before = (folder / "a.txt").read_text()
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "x", "scope": "filtered",
                                                                  "q": "NOT (a OR " * 60 + "a" + ")" * 60})
    assert response.status_code == 303 and response.headers["Location"] == f"/datasets/{dataset.id}"
    assert "nests too deeply" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert (folder / "a.txt").read_text() == before
    assert db.session.scalar(db.select(db.func.count(CaptionBatch.id))) == 0


def test_a_remembered_filter_that_fails_is_dropped(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    image = image_named(dataset, "a.png")
    client.get(f"/datasets/{dataset.id}/images/{image.id}")
    progress = db.session.scalar(db.select(DatasetProgress).where(DatasetProgress.dataset_id == dataset.id))
    progress.filters = {"q": nested_not_or(150)}  # saved by an older version, before the limits
    db.session.commit()
    assert client.get(f"/datasets/{dataset.id}/images/{image.id}").status_code == 200  # the editor drops it
    db.session.refresh(progress)
    assert progress.filters == {}
    progress.filters = {"q": nested_not_or(150)}
    db.session.commit()
    page = client.get(f"/datasets/{dataset.id}")
    assert page.status_code == 200 and "could not be used and was cleared" in page.get_data(as_text=True)
    assert 'class="ds-name" title="a.png"' in page.get_data(as_text=True)  # everything shown
    db.session.refresh(progress)
    assert progress.filters == {}


def test_a_pattern_that_would_backtrack_is_stopped_with_a_message(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "a" * 40 + "!", "b.png": "tok"})
    dataset = open_dataset(client, run_jobs, folder)
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "(a|aa)+$",
                                                                  "replace": "x", "regex": "1"})
    assert "backtracks too much" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert (folder / "a.txt").read_text() == "a" * 40 + "!"
    assert db.session.scalar(db.select(db.func.count(CaptionBatch.id))) == 0
    # Output is bounded too: an empty pattern with a long replacement cannot grow a caption to megabytes.
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "", "replace": "y" * 1000,
                                                                  "regex": "1"})
    assert (folder / "a.txt").read_text() == "a" * 40 + "!"
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "a", "replace": "y" * 5000})
    assert "longer than 65,536 characters" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert (folder / "a.txt").read_text() == "a" * 40 + "!"


# --- unbounded data ----------------------------------------------------------------------------


def test_tag_panel_pages_through_twelve_thousand_tags(client, run_jobs, app):
    tags = [f"tag {n:05d}" for n in range(12_000)]
    captions = {f"{n}.png": ", ".join(tags[n * 1000:(n + 1) * 1000]) for n in range(12)}
    dataset = open_dataset(client, run_jobs, make_folder(app, captions=captions))
    page = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "12,000" in page
    assert page.count('class="ds-use-tag"') == 200
    more = re.search(r'hx-get="([^"]+/tags\?offset=200[^"]*)"', page).group(1).replace("&amp;", "&")
    second = client.get(more).get_data(as_text=True)
    assert second.count('class="ds-use-tag"') == 200 and "offset=400" in second
    found = client.get(f"/datasets/{dataset.id}/tags", query_string={"find": "tag_1199"}).get_data(as_text=True)
    assert sorted(re.findall(r'<li data-tag="([^"]+)"', found)) == [f"tag {n}" for n in range(11990, 12000)]
    assert len(page) < 400_000


def test_huge_caption_is_skipped_and_the_page_stays_small(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok", "b.png": "tok, b"})
    (folder / "a.txt").write_bytes(b"tag, " * (5 * 1024 * 1024 // 5))  # 5 MB
    dataset = open_dataset(client, run_jobs, folder)
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.scan"))
    assert ["a.txt", "a.txt is 5,120 KiB; captions are limited to 64 KiB, so it is not read or written (split it "
            "or shorten it)"] in job.result["skipped"]
    a = image_named(dataset, "a.png")
    assert a.caption is None and "limited to 64 KiB" in a.caption_warning
    page = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert len(page) < 100_000
    editor = client.get(f"/datasets/{dataset.id}/images/{a.id}")
    assert editor.status_code == 200 and len(editor.data) < 100_000
    # A save over it is a conflict (the user sees it first), never a silent overwrite.
    saved = client.post(f"/datasets/{dataset.id}/images/{a.id}/caption", data={"text": "tok, short", "version": ""})
    assert saved.status_code == 409
    assert (folder / "a.txt").stat().st_size == 5 * 1024 * 1024


# --- confinement ---------------------------------------------------------------------------------


def test_caption_symlinked_outside_never_reaches_tags_autocomplete_or_export(client, run_jobs, app, tmp_path):
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("private words of another account")
    folder = make_folder(app, captions={"a.png": None, "b.png": "tok, fine"})
    os.symlink(secret, folder / "a.txt")
    dataset = open_dataset(client, run_jobs, folder)
    assert image_named(dataset, "a.png").caption is None
    assert "private" not in " ".join(db.session.scalars(db.select(DatasetTag.tag)))
    assert "private" not in client.get(f"/datasets/{dataset.id}/complete?tag=priv").get_data(as_text=True)
    editor = client.get(f"/datasets/{dataset.id}/images/{image_named(dataset, 'a.png').id}")
    assert editor.status_code == 200 and "leads outside the dataset folder" in editor.get_data(as_text=True)
    assert "private" not in editor.get_data(as_text=True)
    saved = client.post(f"/datasets/{dataset.id}/images/{image_named(dataset, 'a.png').id}/caption",
                        data={"text": "overwrite through the link", "version": ""})
    assert saved.status_code == 403 and secret.read_text() == "private words of another account"
    archive = export_zip(client, run_jobs, dataset)
    assert all(b"private" not in archive.read(name) for name in archive.namelist())


def test_health_and_scan_messages_name_files_relative_to_the_dataset(client, run_jobs, app):
    folder = make_folder(app)
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"not a png at all")
    dataset = open_dataset(client, run_jobs, folder)
    page = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    assert "sub/broken.png" in page
    assert str(folder) not in page and os.path.realpath(folder) not in page and str(app.config["DATA_DIR"]) not in page


def test_other_accounts_neither_see_nor_open_a_users_folders(client, run_jobs, app):
    folder = make_folder(app, "ada-only")
    open_dataset(client, run_jobs, folder)
    bob = make_user("bob")
    other = log_in(app.test_client(), bob)
    listing = other.get("/datasets/").get_data(as_text=True)
    assert "ada-only" not in listing and str(user_root(app, "bob")) in listing
    for attempt in (str(folder), "../ada/ada-only", str(user_root(app, "bob")) + "/../ada/ada-only"):
        response = other.post("/datasets/", data={"folder": attempt})
        assert response.status_code == 422, attempt
    assert db.session.scalar(db.select(db.func.count(Dataset.id)).where(Dataset.user_id == bob.id)) == 0


def test_a_shared_root_says_so_and_records_who_changed_what(client, run_jobs, app, tmp_path):
    shared = tmp_path / "team"
    app.config["DATASET_ROOTS"] = [*app.config["DATASET_ROOTS"], shared]
    folder = shared / "common"
    save_image(folder / "a.png")
    (folder / "a.txt").write_text("tok, start")
    ada_dataset = open_dataset(client, run_jobs, folder)
    listing = client.get("/datasets/").get_data(as_text=True)
    assert "shared: every account sees and can edit it" in listing
    assert "shared folder" in client.get(f"/datasets/{ada_dataset.id}").get_data(as_text=True)
    bob_client = log_in(app.test_client(), make_user("bob"))
    bob_dataset = open_dataset(bob_client, run_jobs, folder)
    bob_client.post(f"/datasets/{bob_dataset.id}/bulk", data={"action": "add", "tags": "from bob"})
    assert (folder / "a.txt").read_text() == "tok, start, from bob"
    history = client.get(f"/datasets/{ada_dataset.id}/history").get_data(as_text=True)
    assert "Changes by other accounts" in history and "bob" in history and "Add from bob" in history


def test_roots_are_accepted_as_configured_symlinked_or_not(client, run_jobs, app, tmp_path):
    real = tmp_path / "mnt" / "datasets"
    link = tmp_path / "datasets-link"
    save_image(real / "set" / "a.png")
    (real / "set" / "a.txt").write_text("tok")
    os.symlink(real, link)
    app.config["DATASET_ROOTS"] = [link]
    for path in (str(link / "set"), str(real / "set"), "set"):
        response = client.post("/datasets/", data={"folder": path})
        assert response.status_code == 303, (path, response.get_data(as_text=True)[:200])
    run_jobs()
    assert {d.image_count for d in db.session.scalars(db.select(Dataset))} == {1}


ODD_NAMES = ["with space", "naïve ünïcode 字", "new\nline", "-leading-dash", "--", "quote'\"s", "tab\there"]


def test_any_file_name_is_listed_opened_edited_and_exported(client, run_jobs, app):
    folder = make_folder(app, captions={f"{name}.png": f"tok, {len(name)}" for name in ODD_NAMES})
    dataset = open_dataset(client, run_jobs, folder)
    assert dataset.image_count == len(ODD_NAMES)
    for name in ODD_NAMES:
        image = image_named(dataset, f"{name}.png")
        editor = client.get(f"/datasets/{dataset.id}/images/{image.id}")
        assert editor.status_code == 200
        version = re.search(r'id="caption-version" name="version" value="([^"]*)"', editor.get_data(as_text=True)).group(1)
        saved = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": f"tok, edited {len(name)}",
                                                                                        "version": version})
        assert saved.status_code == 200, name
        assert (folder / f"{name}.txt").read_text() == f"tok, edited {len(name)}"
        assert client.get(f"/datasets/{dataset.id}/images/{image.id}/file").status_code == 200
    archive = export_zip(client, run_jobs, dataset)
    captions = [archive.read(n).decode() for n in archive.namelist() if n.endswith(".txt")]
    assert sorted(captions) == sorted(f"tok, edited {len(name)}" for name in ODD_NAMES)
    assert len([n for n in archive.namelist() if n.endswith(".png")]) == len(ODD_NAMES)


# --- the index follows the files ----------------------------------------------------------------


def test_rescan_repairs_a_stale_index(client, run_jobs, app):
    folder = make_folder(app)
    dataset = open_dataset(client, run_jobs, folder)
    a, b = image_named(dataset, "a.png"), image_named(dataset, "b.png")
    # What a lost race used to leave: a row whose caption and tag rows disagree with the file.
    a.caption, a.tag_count = "stale text", 2
    db.session.execute(db.delete(DatasetTag).where(DatasetTag.image_id == b.id))
    db.session.add(DatasetTag(image_id=b.id, tag="ghost", dataset_id=dataset.id, key="ghost"))
    db.session.commit()
    assert client.post(f"/datasets/{dataset.id}/rescan").status_code == 303
    run_jobs()
    a, b = image_named(dataset, "a.png"), image_named(dataset, "b.png")
    assert a.caption == (folder / "a.txt").read_text() and a.tag_count == 4
    tags_of_b = set(db.session.scalars(db.select(DatasetTag.tag).where(DatasetTag.image_id == b.id)))
    assert tags_of_b == {"tok", "1girl", "short hair", "hat"}
    # And the editor keeps working on it (no UNIQUE errors from stale rows).
    editor = client.get(f"/datasets/{dataset.id}/images/{b.id}").get_data(as_text=True)
    version = re.search(r'id="caption-version" name="version" value="([^"]*)"', editor).group(1)
    assert client.post(f"/datasets/{dataset.id}/images/{b.id}/caption",
                       data={"text": "tok, hat", "version": version}).status_code == 200
