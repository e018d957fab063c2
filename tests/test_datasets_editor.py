"""The image editor: saving as you go, version conflicts, chips, read-only files, encodings, autocomplete."""
import os
import re
import stat
from pathlib import Path

import pytest

from app.datasets import routes_editor
from app.datasets.captions import caption_version
from app.datasets.models import CaptionEdit, DatasetProgress, DatasetTag
from app.extensions import db
from tests.datasets_helpers import image_named, make_folder, open_dataset


@pytest.fixture
def dataset(client, run_jobs, app):
    return open_dataset(client, run_jobs, make_folder(app))


def editor_version(client, dataset, image) -> str:
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}").get_data(as_text=True)
    return re.search(r'id="caption-version" name="version" value="([^"]*)"', page).group(1)


def test_editor_shows_the_caption_and_neighbours(client, dataset):
    image = image_named(dataset, "b.png")
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}").get_data(as_text=True)
    assert ">tok, 1girl, short hair, hat</textarea>" in page
    assert re.findall(r'<li class="ds-chip[^"]*">\s*<span>([^<]+)</span>', page) == ["tok", "1girl", "short hair", "hat"]
    a, c = image_named(dataset, "a.png"), image_named(dataset, "c.png")
    assert f'id="prev-image" class="button" href="/datasets/{dataset.id}/images/{a.id}"' in page
    assert f'id="next-image" class="button" href="/datasets/{dataset.id}/images/{c.id}"' in page
    assert "2 of 4" in page
    assert "<kbd>Alt</kbd>+<kbd>N</kbd>" in page  # the shortcuts are documented on the page
    assert db.session.scalar(db.select(DatasetProgress.last_image_id)) == image.id


def test_save_writes_the_file_atomically_and_records_history(client, dataset, app):
    image = image_named(dataset, "a.png")
    version = editor_version(client, dataset, image)
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption",
                           data={"text": "tok, 1girl, blue eyes\r\nsecond line", "version": version})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    caption_file = Path(dataset.root) / "a.txt"
    assert caption_file.read_bytes() == b"tok, 1girl, blue eyes\nsecond line"
    new_version = caption_version(caption_file.read_bytes())
    assert f'id="caption-version" name="version" value="{new_version}" hx-swap-oob="true"' in body
    assert "blue eyes" in body  # chips re-rendered out of band
    image = image_named(dataset, "a.png")
    assert image.caption == "tok, 1girl, blue eyes\nsecond line" and image.caption_version == new_version
    assert "blue eyes" in db.session.scalars(db.select(DatasetTag.tag).where(DatasetTag.image_id == image.id)).all()
    # The original was backed up before the first overwrite.
    backup = Path(app.config["DATA_DIR"]) / "caption-backups" / str(dataset.id) / "a.txt"
    assert backup.read_text() == "tok, 1girl, long hair, smile"
    # Saves while editing one image are one history step: undo goes back to before the session.
    client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "tok, again", "version": new_version})
    [edit] = db.session.scalars(db.select(CaptionEdit)).all()
    assert (edit.before, edit.after) == ("tok, 1girl, long hair, smile", "tok, again")


def test_two_tabs_get_a_conflict_and_nothing_is_lost(client, dataset):
    image = image_named(dataset, "a.png")
    version = editor_version(client, dataset, image)
    first = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "tab one", "version": version})
    assert first.status_code == 200
    second = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "tab two", "version": version})
    assert second.status_code == 409
    body = second.get_data(as_text=True)
    assert "changed elsewhere" in body and "<pre>tab two</pre>" in body and "<pre>tab one</pre>" in body
    assert (Path(dataset.root) / "a.txt").read_text() == "tab one"
    # "Keep my version" sends the version on disk it was shown, and then wins.
    disk_version = re.search(r'name="version" value="([0-9a-f]{32})"', body).group(1)
    keep = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "tab two", "version": disk_version})
    assert keep.status_code == 200
    assert (Path(dataset.root) / "a.txt").read_text() == "tab two"


def test_chip_actions_keep_the_trigger_first(client, dataset):
    dataset.trigger = "tok"
    db.session.commit()
    image = image_named(dataset, "c.png")  # "1boy, long hair": no trigger yet
    url = f"/datasets/{dataset.id}/images/{image.id}/tags"
    version = editor_version(client, dataset, image)
    response = client.post(url, data={"action": "add", "tag": "smile, red eyes", "version": version, "text": "1boy, long hair"})
    assert response.status_code == 200
    assert (Path(dataset.root) / "c.txt").read_text() == "tok, 1boy, long hair, smile, red eyes"
    version = caption_version((Path(dataset.root) / "c.txt").read_bytes())
    client.post(url, data={"action": "front", "tag": "smile", "version": version, "text": "tok, 1boy, long hair, smile, red eyes"})
    assert (Path(dataset.root) / "c.txt").read_text() == "tok, smile, 1boy, long hair, red eyes"
    version = caption_version((Path(dataset.root) / "c.txt").read_bytes())
    response = client.post(url, data={"action": "remove", "tag": "1boy", "version": version,
                                      "text": "tok, smile, 1boy, long hair, red eyes"})
    assert (Path(dataset.root) / "c.txt").read_text() == "tok, smile, long hair, red eyes"
    assert 'id="caption-editor"' in response.get_data(as_text=True)


def test_chip_action_uses_the_unsaved_text_in_the_editor(client, dataset):
    image = image_named(dataset, "a.png")
    version = editor_version(client, dataset, image)
    client.post(f"/datasets/{dataset.id}/images/{image.id}/tags",
                data={"action": "add", "tag": "hat", "version": version, "text": "typed but not saved yet"})
    assert (Path(dataset.root) / "a.txt").read_text() == "typed but not saved yet, hat"


def test_new_caption_file_uses_the_datasets_extension(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": None, "b.png": None, "c.png": None})
    (folder / "b.caption").write_text("kohya style")
    dataset = open_dataset(client, run_jobs, folder)
    assert dataset.caption_ext == ".caption"
    image = image_named(dataset, "a.png")
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "new one", "version": ""})
    assert response.status_code == 200
    assert (folder / "a.caption").read_text() == "new one" and not (folder / "a.txt").exists()
    # A caption created by someone else after the editor opened is a conflict, not overwritten.
    other = image_named(dataset, "c.png")
    (folder / "c.caption").write_text("made elsewhere")
    response = client.post(f"/datasets/{dataset.id}/images/{other.id}/caption", data={"text": "mine", "version": ""})
    assert response.status_code == 409
    assert (folder / "c.caption").read_text() == "made elsewhere"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_read_only_caption_gives_a_clear_error(client, dataset):
    image = image_named(dataset, "a.png")
    caption = Path(dataset.root) / "a.txt"
    caption.chmod(stat.S_IRUSR | stat.S_IRGRP)
    try:
        version = editor_version(client, dataset, image)
        response = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "x", "version": version})
        assert response.status_code == 403
        assert "read-only" in response.get_data(as_text=True)
        assert response.headers["HX-Retarget"] == "#save-status"
        assert caption.read_text() == "tok, 1girl, long hair, smile"
    finally:
        caption.chmod(0o644)


def test_uncertain_encoding_is_shown_and_saved_only_once_confirmed(client, run_jobs, app):
    # "café, crème" in Windows-1252 reads as well in Windows-1250/1257: shown, but never guessed into a write.
    folder = make_folder(app, captions={"a.png": "café, crème".encode("cp1252")})
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "a.png")
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}").get_data(as_text=True)
    assert re.search(r'<textarea id="caption-text"[^>]*readonly[^>]*>café, crème</textarea>', page)
    assert "encoding of this caption is uncertain" in page and "Windows-1252" in page
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "⚠ encoding" in grid
    version = editor_version(client, dataset, image)
    refused = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "café, crème", "version": version})
    assert refused.status_code == 409
    assert (folder / "a.txt").read_bytes() == "café, crème".encode("cp1252")
    # Another reading can be previewed; choosing one writes UTF-8.
    preview = client.get(f"/datasets/{dataset.id}/preview?image_id={image.id}&encoding=cp1250").get_data(as_text=True)
    assert "café, crčme" in preview
    confirmed = client.post(f"/datasets/{dataset.id}/images/{image.id}/encoding", data={"encoding": "cp1252"})
    assert confirmed.status_code == 200 and "saved as UTF-8" in confirmed.get_data(as_text=True)
    assert (folder / "a.txt").read_bytes() == "café, crème".encode("utf-8")
    assert image_named(dataset, "a.png").caption_problems == ""


def test_reviewed_toggle_and_next(client, dataset):
    image = image_named(dataset, "a.png")
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/reviewed", data={"reviewed": "1", "then": "next", "next_id": "7"})
    assert "Mark not reviewed" in response.get_data(as_text=True)
    assert response.headers["HX-Redirect"] == f"/datasets/{dataset.id}/images/7"
    assert image_named(dataset, "a.png").reviewed
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "1 reviewed" in grid


def test_autocomplete_from_dataset_and_tag_list(client, dataset, app, tmp_path):
    csv_path = tmp_path / "danbooru.csv"
    csv_path.write_text('long_sleeves,0,900000,"longsleeves"\nlong_hair,0,5000000,""\nsmile,0,3000000,""\n'
                        '1girl,0,6000000,""\n(o)_(o),0,1000,""\n')
    app.config["TAG_LISTS"] = [str(csv_path)]
    # The first request answers at once from the dataset's own tags while the list is read in the background.
    first = client.get(f"/datasets/{dataset.id}/complete?tag=long").get_json()["suggestions"]
    assert [s["tag"] for s in first] == ["long hair"]
    with app.test_request_context():
        assert routes_editor.tag_list_cache().wait(30) is not None
    suggestions = client.get(f"/datasets/{dataset.id}/complete?tag=long").get_json()["suggestions"]
    tags = [s["tag"] for s in suggestions]
    assert suggestions[0] == {"tag": "long hair", "count": 2, "source": "dataset", "new": False, "alias": None,
                              "category": None}  # the dataset's own tag first, with its image count
    assert tags.count("long hair") == 1
    sleeves = next(s for s in suggestions if s["tag"] == "long sleeves")
    assert (sleeves["source"], sleeves["count"], sleeves["new"]) == ("danbooru", 900000, True)
    # Only the text after the last comma is completed; the dataset's 1girl comes before the list's.
    after_comma = client.get(f"/datasets/{dataset.id}/complete?tag=tok, 1gi").get_json()["suggestions"]
    assert after_comma[0]["tag"] == "1girl" and after_comma[0]["source"] == "dataset"
    kaomoji = client.get(f"/datasets/{dataset.id}/complete?tag=(o)").get_json()["suggestions"]
    assert kaomoji[0]["tag"] == "(o)_(o)"
