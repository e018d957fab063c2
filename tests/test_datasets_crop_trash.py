"""The crop tool's automatic box, bulk crops to buckets as a job, and the trash page (list, restore,
empty), through HTTP: pixels and bytes on disk, rows, responses."""
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from app import imaging
from app.datasets import trash as trash_module
from app.extensions import db
from app.models import Job
from tests.datasets_helpers import drawn_face, illustrated_figure, image_named, open_dataset, user_root


def folder_of(app, name="set") -> Path:
    folder = user_root(app) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def face_photo(path: Path, size=(1200, 800), at=(900, 200), side=220, **save) -> tuple[int, int, int, int]:
    noise = np.random.default_rng(7).integers(60, 120, (size[1], size[0], 3)).astype(np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
    image.paste(drawn_face(side).convert("RGB"), at)
    image.save(path, **save)
    return at[0] + int(side * 0.1), at[1] + int(side * 0.1), at[0] + int(side * 0.9), at[1] + int(side * 1.15)


def contains(box, inner) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


def last_job(kind: str) -> Job:
    job = db.session.scalars(db.select(Job).where(Job.kind == kind).order_by(Job.created_at.desc())).first()
    db.session.refresh(job)
    return job


def test_the_crop_tool_proposes_the_face_and_writes_it_without_script(client, run_jobs, app):
    folder = folder_of(app)
    head = face_photo(folder / "portrait shot (1).png")
    (folder / "portrait shot (1).txt").write_text("mychar, 1girl")
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "portrait shot (1).png")
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}/crop").get_data(as_text=True)
    box = [int(v) for v in re.search(r'data-auto-box="([\d,]+)"', page).group(1).split(",")]
    assert contains(box, head) and "1 face found" in page and 'class="ds-crop-face"' in page
    answer = client.get(f"/datasets/{dataset.id}/images/{image.id}/crop/auto?bucket=832x1216").get_json()
    assert answer["method"] == "face" and contains(answer["box"], head)
    assert (answer["box"][2] - answer["box"][0]) / (answer["box"][3] - answer["box"][1]) == pytest.approx(832 / 1216, abs=0.01)
    assert client.get(f"/datasets/{dataset.id}/images/{image.id}/crop/auto?bucket=1x1").status_code == 422
    assert client.get(f"/datasets/{dataset.id}/images/{image.id}/crop/auto?bucket=..%2F").status_code == 422
    original = (folder / "portrait shot (1).png").read_bytes()
    box = client.get(f"/datasets/{dataset.id}/images/{image.id}/crop/auto?bucket=1024x1024").get_json()["box"]
    assert contains(box, head) and box[2] - box[0] == box[3] - box[1] == 800
    # No box posted (no script ran): the automatic crop is written, at the bucket's size.
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/crop", data={"bucket": "1024x1024", "resize": "1"})
    assert response.status_code == 303
    run_jobs()
    assert (folder / "portrait shot (1).png").read_bytes() == original
    with Image.open(folder / "portrait shot (1)-crop-1024x1024.png") as crop:
        assert crop.size == (1024, 1024)
        written = np.asarray(crop.convert("RGB"), dtype=int)
    with Image.open(folder / "portrait shot (1).png") as whole:
        expected = np.asarray(whole.convert("RGB").crop(tuple(box)).resize((1024, 1024), Image.Resampling.LANCZOS), dtype=int)
    assert np.abs(written - expected).mean() < 4
    assert (folder / "portrait shot (1)-crop-1024x1024.txt").read_text() == "mychar, 1girl"
    assert image_named(dataset, "portrait shot (1)-crop-1024x1024.png") is not None


def test_bulk_crop_to_buckets_writes_new_files_copies_captions_and_names_each_skip(client, run_jobs, app):
    folder = folder_of(app)
    head = face_photo(folder / "face.jpg", quality=92)
    figure_image, figure = illustrated_figure(at=(850, 100))
    figure_image.save(folder / "figure.png")
    # Stored sideways with EXIF orientation 6: upright it is 800 × 1200.
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = 6
    sideways = illustrated_figure(size=(800, 1200), at=(300, 560))[0]
    sideways.transpose(Image.Transpose.ROTATE_90).save(folder / "phone.jpg", exif=exif, quality=92)
    # A 16-bit scan, a cut-out with alpha, a tiny image, one already bucket-sized, an odd name.
    scan = (np.asarray(figure_image.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(scan).save(folder / "scan16.png")
    rgba = figure_image.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0))
    rgba.paste(figure_image.crop(figure), figure[:2])
    rgba.save(folder / "cutout.png")
    Image.new("RGB", (100, 80), "red").save(folder / "tiny.png")
    Image.new("RGB", (1024, 1024), "blue").save(folder / "square.png")
    weird = "naïve ☃ 'quote' #1.png"
    figure_image.save(folder / weird)
    for name in ("face", "figure", "phone", "scan16", "cutout", "tiny", "square"):
        (folder / f"{name}.txt").write_text(f"mychar, {name}")
    dataset = open_dataset(client, run_jobs, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    ids = [image_named(dataset, n).id for n in ("face.jpg", "figure.png", "phone.jpg", "scan16.png", "cutout.png",
                                                  "tiny.png", "square.png", weird)]
    page = client.get(f"/datasets/{dataset.id}/crop-buckets", query_string={"scope": "selected", "ids": ids})
    assert page.status_code == 200 and "Cropping the 8 selected images" in page.get_data(as_text=True)
    response = client.post(f"/datasets/{dataset.id}/crop-buckets",
                           data={"scope": "selected", "ids": ids, "trainer": "kohya-sdxl", "where": "beside",
                                 "exclude_originals": "1"})
    assert response.status_code == 200 and 'class="job"' in response.get_data(as_text=True)
    run_jobs()
    job = last_job("datasets.crop")
    assert job.status == Job.SUCCEEDED, job.error
    assert job.result["written"] == 6, job.result
    skipped = dict(map(tuple, job.result["skipped"]))
    assert skipped["tiny.png"].startswith("far smaller than its bucket (100×80 for 1152×896): scaling it up 11.5×")
    assert skipped["square.png"] == "already 1024×1024, its bucket's size"
    # Originals are byte-identical; every crop is exactly its bucket, with the caption copied.
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, name
    expected = {"face-crop-1216x832.jpg": (1216, 832), "figure-crop-1216x832.png": (1216, 832),
                "phone-crop-832x1216.jpg": (832, 1216), "scan16-crop-1216x832.png": (1216, 832),
                "cutout-crop-1216x832.png": (1216, 832), "naïve ☃ 'quote' #1-crop-1216x832.png": (1216, 832)}
    for name, size in expected.items():
        with Image.open(folder / name) as crop:
            assert crop.size == size, name
    assert (folder / "face-crop-1216x832.txt").read_text() == "mychar, face"
    # 1216×832 from 1200×800 keeps (nearly) all of it; the subject is kept in every crop.
    with Image.open(folder / "cutout-crop-1216x832.png") as crop:
        assert crop.mode == "RGBA" and crop.getchannel("A").getextrema() == (0, 255)
    # The rescan brings the crops in as images; the originals are excluded from training.
    run_jobs()
    assert image_named(dataset, "face-crop-1216x832.jpg").caption == "mychar, face"
    assert image_named(dataset, "face.jpg").excluded and not image_named(dataset, "tiny.png").excluded
    # Run again: nothing is overwritten, each image says why it is skipped.
    client.post(f"/datasets/{dataset.id}/crop-buckets", data={"scope": "selected", "ids": ids[:1], "where": "beside"})
    run_jobs()
    again = last_job("datasets.crop")
    assert again.result["written"] == 0 and again.result["skipped"] == [["face.jpg", "excluded from training"]]


def test_bulk_crop_into_a_sub_folder_and_refuses_escapes(client, run_jobs, app):
    folder = folder_of(app)
    figure_image, figure = illustrated_figure(size=(1600, 800), at=(1200, 100))
    (folder / "part").mkdir()
    figure_image.save(folder / "part" / "wide.png")
    (folder / "part" / "wide.txt").write_text("mychar")
    dataset = open_dataset(client, run_jobs, folder)
    for bad in ("../out", "/tmp/x", ".hidden", "a/../../b"):
        response = client.post(f"/datasets/{dataset.id}/crop-buckets", data={"where": "folder", "folder": bad})
        assert response.status_code == 422, bad
    os.symlink(user_root(app).parent, folder / "escape")
    client.post(f"/datasets/{dataset.id}/crop-buckets", data={"where": "folder", "folder": "escape"})
    run_jobs()
    job = last_job("datasets.crop")
    assert job.result["written"] == 0 and re.search("outside|link", job.result["skipped"][0][1])
    assert not list(user_root(app).parent.glob("part"))
    client.post(f"/datasets/{dataset.id}/crop-buckets", data={"where": "folder", "folder": "cropped", "trainer": "kohya-sdxl"})
    run_jobs()
    assert last_job("datasets.crop").result["written"] == 1, last_job("datasets.crop").result
    written = folder / "cropped" / "part" / "wide-crop-1408x704.png"
    with Image.open(written) as crop:
        assert crop.size == (1408, 704)  # 2:1 is a bucket's own shape: all of it, scaled
    assert (folder / "cropped" / "part" / "wide-crop-1408x704.txt").read_text() == "mychar"


def trash_some(client, dataset, names) -> None:
    for name in names:
        image = image_named(dataset, name)
        assert client.post(f"/datasets/{dataset.id}/images/{image.id}/trash").status_code == 303


def test_the_trash_page_lists_restores_and_empties_what_was_seen(client, run_jobs, app):
    folder = folder_of(app)
    names = [f"img {n:02d} ☃.png" for n in range(7)]
    for n, name in enumerate(names):
        Image.new("RGB", (64 + n, 64), (n * 30, 0, 0)).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(f"caption {n}")
    dataset = open_dataset(client, run_jobs, folder)
    trash_some(client, dataset, names[:6])
    page = client.get(f"/datasets/{dataset.id}/trash").get_data(as_text=True)
    assert "6 items" in page and page.count("Restore") >= 6 and "img 05 ☃.png" in page
    assert "Empty trash…" in page
    # Restore one from the page.
    entry = re.search(r'name="entry" value="([^"]+)"', page).group(1)
    assert client.post(f"/datasets/{dataset.id}/trash/restore", data={"entry": entry}).status_code == 303
    assert (folder / "img 05 ☃.png").exists() and (folder / "img 05 ☃.txt").read_text() == "caption 5"
    assert client.post(f"/datasets/{dataset.id}/trash/restore", data={"entry": "../../etc"}).status_code == 303
    # The confirmation names the count and size; it empties only what it counted.
    confirm = client.get(f"/datasets/{dataset.id}/trash?confirm=1").get_data(as_text=True)
    summary = trash_module.trash_summary(folder)
    assert summary.count == 5
    assert re.search(r"Delete 5 items \([\d.]+ [kM]?B\) for good\?", confirm)
    through = re.search(r'name="through" value="([^"]+)"', confirm).group(1)
    run_jobs()
    db.session.expire_all()
    trash_some(client, dataset, [names[6]])  # trashed after the user looked: kept
    response = client.post(f"/datasets/{dataset.id}/trash/empty", data={"through": through})
    assert response.status_code == 303
    assert [e.image for e in trash_module.list_trash(folder)] == [names[6]]
    assert "Deleted 5 items for good" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_the_trash_pages_thousands_and_empties_them_in_a_job(client, run_jobs, app, monkeypatch):
    folder = folder_of(app)
    Image.new("RGB", (8, 8)).save(folder / "keep.png")
    dataset = open_dataset(client, run_jobs, folder)
    base = folder / trash_module.TRASH
    for n in range(1, 251):  # entries as move_to_trash makes them, without 250 requests
        entry = base / f"20261130-120000-{n}"
        (entry / "files").mkdir(parents=True)
        (entry / "files" / f"x{n}.png").write_bytes(b"x" * 100)
        (entry / "entry.json").write_text(f'{{"image": "x{n}.png", "caption": null, "deleted_at": "2026-11-30T12:00:00+00:00"}}')
    # A link inside an entry is removed as a link: its target outside the dataset survives.
    outside = user_root(app).parent / "precious.txt"
    outside.write_text("keep me")
    os.symlink(outside, base / "20261130-120000-3" / "files" / "link.txt")
    first = client.get(f"/datasets/{dataset.id}/trash").get_data(as_text=True)
    assert "250 items" in first and "Page 1 of 5" in first
    # Newest first, by number not by text ("-250" before "-99").
    assert first.index("x250.png") < first.index("x249.png") and "x99.png" not in first
    assert "x1.png" in client.get(f"/datasets/{dataset.id}/trash?page=5").get_data(as_text=True)
    response = client.post(f"/datasets/{dataset.id}/trash/empty", data={"through": "20261130-120000-250"})
    assert response.status_code == 303
    assert 'class="job"' in client.get(response.headers["Location"]).get_data(as_text=True)
    run_jobs()
    job = last_job("datasets.empty_trash")
    assert job.status == Job.SUCCEEDED and job.result["deleted"] == 250
    assert list(base.iterdir()) == [] and outside.read_text() == "keep me" and (folder / "keep.png").exists()


def test_a_trash_folder_that_is_a_link_is_refused(client, run_jobs, app):
    folder = folder_of(app)
    Image.new("RGB", (8, 8)).save(folder / "keep.png")
    dataset = open_dataset(client, run_jobs, folder)
    elsewhere = user_root(app).parent / "elsewhere"
    (elsewhere / "20261130-120000-1").mkdir(parents=True)
    os.symlink(elsewhere, folder / trash_module.TRASH)
    assert client.get(f"/datasets/{dataset.id}/trash").status_code == 403
    assert client.post(f"/datasets/{dataset.id}/trash/empty", data={"through": "20261130-120000-1"}).status_code == 403
    assert (elsewhere / "20261130-120000-1").is_dir()


def test_a_crop_of_an_image_whose_caption_encoding_is_uncertain_gets_its_bytes_not_a_guess(client, run_jobs, app):
    folder = folder_of(app)
    figure_image, _ = illustrated_figure(at=(850, 100))
    figure_image.save(folder / "ko.png")
    korean = "mychar, 소녀, 미소".encode("euc-kr")  # EUC-JP and GBK read these bytes as well
    (folder / "ko.txt").write_bytes(korean)
    figure_image.save(folder / "ok.png")
    (folder / "ok.txt").write_bytes(b"\xef\xbb\xbfmychar, 1girl\r\n")  # a BOM and CRLF: written clean
    dataset = open_dataset(client, run_jobs, folder)
    assert "encoding_uncertain" in image_named(dataset, "ko.png").caption_problems
    client.post(f"/datasets/{dataset.id}/crop-buckets", data={"where": "beside", "trainer": "kohya-sdxl"})
    run_jobs()
    assert last_job("datasets.crop").result["written"] == 2
    assert (folder / "ko-crop-1216x832.txt").read_bytes() == korean
    assert (folder / "ok-crop-1216x832.txt").read_bytes() == b"mychar, 1girl\n"
    assert (folder / "ko.txt").read_bytes() == korean


def test_the_trash_page_shows_each_trashed_image_s_thumbnail(client, run_jobs, app):
    folder = folder_of(app)
    Image.new("RGB", (120, 80), (200, 30, 30)).save(folder / "red one.png")
    Image.new("RGB", (8, 8)).save(folder / "keep.png")
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "red one.png")
    client.post(f"/datasets/{dataset.id}/images/{image.id}/trash")
    page = client.get(f"/datasets/{dataset.id}/trash").get_data(as_text=True)
    src = re.search(r'<img src="([^"]+/thumb\.webp\?h=[0-9a-f]{16})"', page).group(1)
    # The cached grid thumbnail is gone too: it is made again from the file in the trash.
    for cached in (Path(app.config["DATA_DIR"]) / "thumbs").rglob("*.webp"):
        cached.unlink()
    response = client.get(src.replace("&amp;", "&"))
    assert response.status_code == 200 and response.mimetype == "image/webp"
    from io import BytesIO
    with Image.open(BytesIO(response.get_data())) as thumb:
        assert thumb.convert("RGB").getpixel((thumb.width // 2, thumb.height // 2))[0] > 150
    entry = re.search(r'name="entry" value="([^"]+)"', page).group(1)
    assert client.get(f"/datasets/{dataset.id}/trash/..%2F..%2Fetc/thumb.webp").status_code == 404
    assert client.get(f"/datasets/{dataset.id}/trash/{entry}x/thumb.webp").status_code == 404
