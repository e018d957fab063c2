""""Move to trash" from the image editor: the image and every caption file of its own move to the
dataset's trash byte for byte, its row and tags leave the index, the editor goes on to the next image
of the user's filter, and the notice there restores both files. Also what an editor left open in
another tab gets for an image that is gone."""
import re

from app.datasets import grid
from app.datasets import trash as trash_module
from app.datasets.models import DatasetImage
from app.extensions import db
from tests.datasets_helpers import image_named, make_folder, open_dataset, save_image

NAME = "少女 ☺ 1.png"  # a Japanese, emoji and space name
NEXT = "少女 ☺ 2.png"  # after NAME in the grid's order (b.png and d.png sort before both)


def editor_url(dataset, image) -> str:
    return f"/datasets/{dataset.id}/images/{image.id}"


def counts(dataset) -> dict[str, int]:
    db.session.expire_all()
    return dict(grid.tag_counts(dataset.id))


def test_moving_to_trash_moves_the_image_and_its_captions_and_goes_on_in_the_filter(client, run_jobs, app):
    folder = make_folder(app, captions={NAME: "tok, 1girl, long hair", "b.png": "tok, short hair",
                                        NEXT: "tok, 1boy, long hair", "d.png": None})
    (folder / "少女 ☺ 1.caption").write_text("a second caption file", encoding="utf-8")
    before = {name: (folder / name).read_bytes() for name in (NAME, "少女 ☺ 1.txt", "少女 ☺ 1.caption")}
    dataset = open_dataset(client, run_jobs, folder)
    assert counts(dataset)["long hair"] == 2 and counts(dataset)["1girl"] == 1
    client.get(f"/datasets/{dataset.id}?q=long+hair")  # the remembered filter: NAME, then NEXT
    image = image_named(dataset, NAME)
    page = client.get(editor_url(dataset, image)).get_data(as_text=True)
    assert 'id="trash-button"' in page and "Move to trash" in page
    assert "<kbd>Delete</kbd>" in page and "move the image and its caption to the trash" in page

    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/editor-trash")
    assert response.status_code == 303
    c = image_named(dataset, NEXT)
    entry = trash_module.list_trash(folder)[0]
    assert response.headers["Location"] == f"/datasets/{dataset.id}/images/{c.id}?trashed={entry.name}"
    # Both caption files went with the image, byte for byte, and nothing of it is left in the folder.
    assert entry.image == NAME and set(entry.captions) == {"少女 ☺ 1.txt", "少女 ☺ 1.caption"}
    for name, data in before.items():
        assert not (folder / name).exists()
        assert (folder / trash_module.TRASH / entry.name / "files" / name).read_bytes() == data
    assert image_named(dataset, NAME) is None
    assert db.session.get(type(dataset), dataset.id).image_count == 3
    after = counts(dataset)
    assert after["long hair"] == 1 and "1girl" not in after and after["tok"] == 2

    # The next image's page says what moved and offers to restore it.
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'id="trashed-notice"' in page and "Moved <code>少女 ☺ 1.png</code>" in page
    assert f'name="entry" value="{entry.name}"' in page and f'name="next" value="/datasets/{dataset.id}/images/{c.id}"' in page
    restored = client.post(f"/datasets/{dataset.id}/trash/restore",
                           data={"entry": entry.name, "next": f"/datasets/{dataset.id}/images/{c.id}"})
    assert restored.status_code == 303 and restored.headers["Location"] == f"/datasets/{dataset.id}/images/{c.id}"
    for name, data in before.items():
        assert (folder / name).read_bytes() == data
    assert trash_module.list_trash(folder) == []
    run_jobs()  # the rescan the restore started
    assert image_named(dataset, NAME).caption == "tok, 1girl, long hair"
    assert counts(dataset)["long hair"] == 2 and counts(dataset)["1girl"] == 1
    # Once restored, the notice is gone from that page.
    assert 'id="trashed-notice"' not in client.get(response.headers["Location"]).get_data(as_text=True)


def test_the_last_image_leads_back_to_the_grid_with_the_notice(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok", "b.png": "tok, hat"})
    dataset = open_dataset(client, run_jobs, folder)
    last = image_named(dataset, "b.png")
    response = client.post(f"/datasets/{dataset.id}/images/{last.id}/editor-trash")
    entry = trash_module.list_trash(folder)[0]
    assert response.headers["Location"] == f"/datasets/{dataset.id}?trashed={entry.name}"
    grid_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Moved <code>b.png</code> and its caption <code>b.txt</code> to the trash." in grid_page
    assert "hat" not in dict(grid.tag_counts(dataset.id))
    # A made-up or hostile entry name shows nothing (and reads nothing outside the trash).
    assert 'id="trashed-notice"' not in client.get(f"/datasets/{dataset.id}?trashed=../../etc").get_data(as_text=True)


def test_a_caption_another_image_pairs_with_stays(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok, shared"})
    save_image(folder / "a.jpg", "blue", (40, 40))  # a.jpg pairs with a.txt too
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "a.png")
    client.post(f"/datasets/{dataset.id}/images/{image.id}/editor-trash")
    entry = trash_module.list_trash(folder)[0]
    assert entry.captions == () and (folder / "a.txt").read_text() == "tok, shared" and not (folder / "a.png").exists()
    location = client.get(f"/datasets/{dataset.id}/images/{image_named(dataset, 'a.jpg').id}?trashed={entry.name}")
    assert "Moved <code>a.png</code> to the trash." in location.get_data(as_text=True)


def test_another_tab_s_editor_says_the_image_is_gone(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok", "b.png": "tok"})
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "a.png")
    image_id, version = image.id, image.caption_version
    assert client.post(f"/datasets/{dataset.id}/images/{image_id}/editor-trash").status_code == 303

    # The other tab: reloading, saving typed text, a chip, "reviewed", and moving it to the trash again.
    page = client.get(f"/datasets/{dataset.id}/images/{image_id}")
    assert page.status_code == 404 and "moved to the trash" in page.get_data(as_text=True)
    htmx = {"HX-Request": "true"}
    for path, data in (("caption", {"text": "tok, typed", "version": version}),
                       ("tags", {"action": "add", "tag": "hat", "text": "tok", "version": version}),
                       ("reviewed", {"reviewed": "1"})):
        response = client.post(f"/datasets/{dataset.id}/images/{image_id}/{path}", data=data, headers=htmx)
        body = response.get_data(as_text=True)
        assert response.status_code == 404 and response.headers["HX-Retarget"] == "#save-status", path
        assert 'id="save-status"' in body and "moved to the trash" in body, path
    # Nothing was written for the gone image: no caption file came back.
    assert not (folder / "a.txt").exists() and not (folder / "a.png").exists()
    again = client.post(f"/datasets/{dataset.id}/images/{image_id}/editor-trash")
    assert again.status_code == 303 and again.headers["Location"] == f"/datasets/{dataset.id}"
    assert "already gone" in client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert len(trash_module.list_trash(folder)) == 1


def test_an_image_deleted_on_disk_is_said_not_half_trashed(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok", "b.png": "tok"})
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "a.png")
    (folder / "a.png").unlink()
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/editor-trash")
    assert response.headers["Location"] == f"/datasets/{dataset.id}/images/{image.id}"
    assert (folder / "a.txt").read_text() == "tok" and trash_module.list_trash(folder) == []
    assert db.session.scalar(db.select(db.func.count()).select_from(DatasetImage)
                             .where(DatasetImage.dataset_id == dataset.id)) == 2


def test_own_captions_finds_every_caption_file_of_the_name_only(tmp_path):
    for name in ("x.png", "x.txt", "X.CAPTION", "x.cap", "x.jpg", "xy.txt", "x.png.txt"):
        (tmp_path / name).write_bytes(b"1")
    found = trash_module.own_captions(tmp_path, "x.png")
    assert found.captions == ("X.CAPTION", "x.cap", "x.txt") and found.shared_with == ("x.jpg",)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "y z.webp").write_bytes(b"1")
    assert trash_module.own_captions(tmp_path, "sub/y z.webp") == trash_module.OwnCaptions((), ())


def test_a_save_for_an_image_gone_from_disk_writes_no_caption_beside_nothing(client, run_jobs, app):
    # What an editor in another tab meets when its save waits on the trash's folder lock: the
    # image is gone when the save's turn comes (here it went outside Tessera, the row still there).
    folder = make_folder(app, captions={"a.png": None, "b.png": "tok"})
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "a.png")
    (folder / "a.png").unlink()
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "tok, new", "version": ""},
                           headers={"HX-Request": "true"})
    assert response.status_code == 404 and "no longer in the dataset" in response.get_data(as_text=True)
    assert not (folder / "a.txt").exists() and image_named(dataset, "a.png").caption is None
