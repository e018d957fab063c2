"""Opening datasets (folder, zip), the scan job, the grid and its filters, thumbnails, path safety."""
import io
import os
import re
import zipfile
from pathlib import Path

from PIL import Image

from app.datasets.models import Dataset, DatasetImage, DatasetProgress, DatasetTag
from app.datasets.thumbnails import thumb_relpath
from app.extensions import db
from app.gallery import Generation
from app.models import Job, User
from tests.datasets_helpers import honest_bomb, image_named, make_folder, open_dataset, png_bytes, save_image


def test_open_folder_scans_indexes_and_makes_thumbnails(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok, long_hair", "sub/b.jpg": None, "c.webp": "x"})
    (folder / "sub" / "b.caption").write_text("tok, blue", encoding="utf-8")
    dataset = open_dataset(client, run_jobs, folder)
    assert dataset.image_count == 3 and dataset.scanned_at is not None
    images = {i.relpath: i for i in db.session.scalars(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id))}
    assert sorted(images) == ["a.png", "c.webp", "sub/b.jpg"]
    a = images["a.png"]
    assert (a.width, a.height, a.caption, a.tag_count) == (64, 48, "tok, long_hair", 2)
    assert len(a.content_hash) == 64 and isinstance(a.phash, int)
    assert images["sub/b.jpg"].caption_relpath == "sub/b.caption"
    tags = db.session.execute(db.select(DatasetTag.tag, DatasetTag.key).where(DatasetTag.image_id == a.id)).all()
    assert sorted(tags) == [("long_hair", "long hair"), ("tok", "tok")]
    # The scan queued a thumbnail job, which the burst worker ran too.
    kinds = [job.kind for job in db.session.scalars(db.select(Job).order_by(Job.created_at))]
    assert kinds == ["datasets.scan", "datasets.thumbs"]
    assert all(image.thumb_ready for image in images.values())
    thumb = Path(app.config["DATA_DIR"]) / thumb_relpath(a.content_hash)
    with Image.open(thumb) as image:
        assert image.format == "WEBP" and max(image.size) <= 256
        assert image.convert("RGB").getpixel((5, 5))[0] > 200  # red

    response = client.get(f"/datasets/{dataset.id}/thumbs/{a.id}-{a.content_hash[:16]}.webp")
    assert response.status_code == 200 and response.mimetype == "image/webp"
    assert "immutable" in response.headers["Cache-Control"]
    assert client.get(f"/datasets/{dataset.id}/thumbs/{a.id}-0000000000000000.webp").status_code == 404
    # A cleared thumbnail cache is refilled on demand.
    thumb.unlink()
    assert client.get(f"/datasets/{dataset.id}/thumbs/{a.id}-{a.content_hash[:16]}.webp").status_code == 200
    assert thumb.is_file()


def test_rescan_picks_up_changes_made_outside(client, run_jobs, app):
    folder = make_folder(app)
    dataset = open_dataset(client, run_jobs, folder)
    before = (folder / "a.txt").stat()
    (folder / "a.txt").write_text("edited, outside", encoding="utf-8")
    # Even with the old mtime (a coarse clock, a restored backup) the change is seen: versions are content.
    os.utime(folder / "a.txt", ns=(before.st_atime_ns, before.st_mtime_ns))
    (folder / "b.png").unlink()
    save_image(folder / "e.png", "white")
    assert client.post(f"/datasets/{dataset.id}/rescan").status_code == 303
    run_jobs()
    assert image_named(dataset, "a.png").caption == "edited, outside"
    assert image_named(dataset, "b.png") is None
    assert image_named(dataset, "e.png") is not None
    tags = set(db.session.scalars(db.select(DatasetTag.tag).where(DatasetTag.dataset_id == dataset.id)))
    assert "edited" in tags and "smile" not in tags and "hat" not in tags


def test_grid_filters_by_expression_untagged_and_text(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))

    def names(query: str) -> list[str]:
        page = client.get(f"/datasets/{dataset.id}?{query}").get_data(as_text=True)
        return re.findall(r'class="ds-name" title="([^"]+)"', page)

    assert names("q=long+hair") == ["a.png", "c.png"]
    assert names("q=long_hair+AND+NOT+smile") == ["c.png"]
    assert names("q=hat+OR+smile") == ["a.png", "b.png"]
    assert names("q=*hair+-1boy") == ["a.png", "b.png"]
    assert names("untagged=1") == ["d.png"]
    assert names("search=SHORT") == ["b.png"]
    assert names("sort=most-tags") == ["a.png", "b.png", "c.png", "d.png"]
    page = client.get(f"/datasets/{dataset.id}?q=(smile").get_data(as_text=True)
    assert "Unbalanced parenthesis" in page
    # Filters are kept for the user and restored when they come back without any.
    client.get(f"/datasets/{dataset.id}?q=hat")
    progress = db.session.scalar(db.select(DatasetProgress))
    assert progress.filters == {"q": "hat"}
    assert names("") == ["b.png"]


def test_grid_scrolls_in_pages(client, run_jobs, app):
    folder = make_folder(app, captions={f"{n:03d}.png": f"t{n}" for n in range(70)})
    dataset = open_dataset(client, run_jobs, folder)
    first = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert first.count('class="ds-name"') == 60
    more = re.search(r'hx-get="([^"]+offset=60[^"]*)"\s+hx-trigger="revealed"', first).group(1)
    rest = client.get(more.replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'class="ds-name" title="([^"]+)"', rest) == [f"{n:03d}.png" for n in range(60, 70)]
    assert 'hx-trigger="revealed"' not in rest


def test_cell_shows_placeholder_until_thumbnail_exists(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    image = image_named(dataset, "a.png")
    image.thumb_ready = False
    db.session.commit()
    cell = client.get(f"/datasets/{dataset.id}/images/{image.id}/cell").get_data(as_text=True)
    assert "Thumbnail on its way" in cell and 'hx-trigger="every 3s"' in cell
    image.thumb_ready = True
    db.session.commit()
    cell = client.get(f"/datasets/{dataset.id}/images/{image.id}/cell").get_data(as_text=True)
    assert f"{image.id}-{image.content_hash[:16]}.webp" in cell and "every 3s" not in cell


def test_folder_outside_the_roots_is_refused(client, app, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for folder in (str(outside), "../../", "/etc"):
        response = client.post("/datasets/", data={"folder": folder})
        assert response.status_code == 422
        assert "outside the dataset folders" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Dataset.id))) == 0


def test_symlink_out_of_the_dataset_is_not_followed(client, run_jobs, app, tmp_path):
    secret = tmp_path / "secret.png"
    save_image(secret, "black")
    folder = make_folder(app)
    os.symlink(secret, folder / "link.png")
    dataset = open_dataset(client, run_jobs, folder)
    assert image_named(dataset, "link.png") is None
    # A row that names a path outside (as if the index were tampered with) is refused by every file route.
    image = image_named(dataset, "a.png")
    image.relpath = "../../secret.png"
    image.caption_relpath = "../../secret.txt"
    db.session.commit()
    assert client.get(f"/datasets/{dataset.id}/images/{image.id}/file").status_code == 403
    editor = client.get(f"/datasets/{dataset.id}/images/{image.id}")  # opens, says why, reads nothing
    assert editor.status_code == 200 and "leads outside the dataset folder" in editor.get_data(as_text=True)
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/caption", data={"text": "x", "version": ""})
    assert response.status_code == 403
    assert not (tmp_path / "secret.txt").exists()


def test_other_users_dataset_is_404(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    image = image_named(dataset, "a.png")
    other = User(username="bob")
    other.set_password("another password")
    db.session.add(other)
    db.session.commit()
    dataset.user_id = other.id
    db.session.commit()
    for url in (f"/datasets/{dataset.id}", f"/datasets/{dataset.id}/images/{image.id}",
                f"/datasets/{dataset.id}/images/{image.id}/file", f"/datasets/{dataset.id}/health"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "tok", "new": "x"}).status_code == 404


def _zip(entries: dict[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    buffer.seek(0)
    return buffer


def test_zip_upload_is_unpacked_into_a_managed_folder(client, run_jobs, app):
    archive = _zip({"set/a.png": png_bytes("red"), "set/a.txt": b"tok, red", "__MACOSX/set/._a.png": b"junk",
                    "set/notes.exe": b"MZ"})
    response = client.post("/datasets/upload", data={"archive": (archive, "mine.zip")}, content_type="multipart/form-data")
    assert response.status_code == 303
    run_jobs()
    dataset = db.session.scalar(db.select(Dataset))
    assert dataset.managed and dataset.name == "mine"
    root = Path(dataset.root)
    assert root == Path(app.config["DATA_DIR"]) / "uploaded-datasets" / str(dataset.id)
    assert (root / "set" / "a.png").is_file() and not (root / "__MACOSX").exists() and not (root / "set" / "notes.exe").exists()
    assert image_named(dataset, "set/a.png").caption == "tok, red"
    page = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "Leaving out 1" in page and "notes.exe" in page
    # The upload waited for the job in the data folder, and is gone once unpacked.
    assert not any((Path(app.config["DATA_DIR"]) / "uploads" / "pending-zips").iterdir())
    job = db.session.scalar(db.select(Job).where(Job.kind == "datasets.import"))
    assert job.status == Job.SUCCEEDED and job.result["dataset_id"] == dataset.id


def test_the_review_zip_bomb_is_refused_in_the_request_writing_nothing(client, app):
    bomb = honest_bomb(50, 199 << 20)
    response = client.post("/datasets/upload", data={"archive": (bomb, "bomb.zip")}, content_type="multipart/form-data")
    assert response.status_code == 422 and "zip bomb" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Dataset.id))) == 0
    data = Path(app.config["DATA_DIR"])
    written = sum(p.stat().st_size for p in data.rglob("*") if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm")
                  and p.name != "secret_key")
    assert written < 1 << 20


def test_upload_quota_is_kept_per_user(client, run_jobs, app):
    app.config["USER_QUOTA_BYTES"] = 3000
    first = client.post("/datasets/upload", data={"archive": (_zip({"a.png": png_bytes("red") + bytes(1500)}), "one.zip")},
                        content_type="multipart/form-data")
    assert first.status_code == 303
    run_jobs()
    second = client.post("/datasets/upload", data={"archive": (_zip({"b.png": png_bytes("blue") + bytes(1500)}), "two.zip")},
                         content_type="multipart/form-data")
    assert second.status_code == 422 and "quota has only" in second.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Dataset.id))) == 1


def test_zip_with_a_path_escape_is_refused_and_leaves_nothing(client, app):
    archive = _zip({"../evil.png": png_bytes(), "a.png": png_bytes()})
    response = client.post("/datasets/upload", data={"archive": (archive, "bad.zip")}, content_type="multipart/form-data")
    assert response.status_code == 422
    assert "leaves its folder" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Dataset.id))) == 0
    managed = Path(app.config["DATA_DIR"]) / "uploaded-datasets"
    assert not managed.exists() or not any(managed.iterdir())


def test_send_generation_into_a_dataset(client, run_jobs, app, user):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    dataset.trigger = "tok"
    db.session.commit()
    path = Path(app.config["DATA_DIR"]) / "outputs" / "gen.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(png_bytes("green", (40, 30)))
    generation = Generation(user_id=user.id, model_ref="m/x", prompt="a  green field", params={}, path="outputs/gen.png",
                            width=40, height=30)
    db.session.add(generation)
    db.session.commit()
    response = client.post("/datasets/send", data={"generation_id": generation.id, "dataset_id": dataset.id})
    assert response.status_code == 200 and "Sent to" in response.get_data(as_text=True)
    run_jobs()
    sent = image_named(dataset, f"tessera-{generation.id}.png")
    assert sent is not None and sent.caption == "tok, a green field"
    assert (Path(dataset.root) / f"tessera-{generation.id}.png").read_bytes() == path.read_bytes()
    # Someone else's generation cannot be sent.
    other = User(username="bob")
    other.set_password("another password")
    db.session.add(other)
    db.session.commit()
    generation.user_id = other.id
    db.session.commit()
    assert client.post("/datasets/send", data={"generation_id": generation.id, "dataset_id": dataset.id}).status_code == 404


def test_send_form_partial_lists_the_users_datasets(client, run_jobs, app, user):
    dataset = open_dataset(client, run_jobs, make_folder(app), name="Faces")
    generation = Generation(user_id=user.id, model_ref="m/x", prompt="p", params={}, path="outputs/x.png", width=1, height=1)
    db.session.add(generation)
    db.session.commit()
    with app.test_request_context():
        from flask import render_template
        from flask_login import login_user

        login_user(user)
        html = render_template("datasets/_send_to_dataset.html", item=generation)
    assert f'value="{generation.id}"' in html and f'<option value="{dataset.id}">Faces</option>' in html
    assert 'for="send-' in html


def test_a_broken_filter_is_not_kept(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    client.get(f"/datasets/{dataset.id}?q=hat")
    page = client.get(f"/datasets/{dataset.id}?q=hat+AND").get_data(as_text=True)
    assert "Missing tag after AND" in page
    assert db.session.scalar(db.select(DatasetProgress.filters)) == {"q": "hat"}
    image = image_named(dataset, "b.png")
    assert client.get(f"/datasets/{dataset.id}/images/{image.id}").status_code == 200
