"""Datasets that hold up on real files: encodings, BOMs, blank first lines, pairing, orientation,
transparency, duplicates that can be excluded or trashed, tag spellings, exports of a scope, crops."""
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from app import imaging
from app.datasets.models import DatasetImage
from app.extensions import db
from app.models import Job
from tests.datasets_helpers import image_named, make_folder, open_dataset, pattern_image, save_image, user_root


def empty_folder(app) -> Path:
    folder = user_root(app) / "set"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def follow(client, response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


def export(client, run_jobs, dataset, **form) -> tuple[Job, zipfile.ZipFile | dict]:
    response = client.post(f"/datasets/{dataset.id}/export", data={"format": "training", **form})
    assert response.status_code == 200, response.get_data(as_text=True)
    run_jobs()
    job = db.session.scalars(db.select(Job).where(Job.kind == "datasets.export").order_by(Job.created_at.desc())).first()
    db.session.refresh(job)
    assert job.status == Job.SUCCEEDED, job.error
    data = client.get(f"/datasets/exports/{job.id}").get_data()
    if job.result["filename"].endswith(".json"):
        return job, json.loads(data)
    return job, zipfile.ZipFile(io.BytesIO(data))


def test_shift_jis_caption_is_shown_and_bulk_add_writes_utf8(client, run_jobs, app):
    folder = make_folder(app, captions={"j.png": "mychar, 少女, 笑顔".encode("shift_jis"), "k.png": "mychar, 1girl"})
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "j.png")
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}").get_data(as_text=True)
    assert ">mychar, 少女, 笑顔</textarea>" in page and "Shift-JIS" in page
    summary = follow(client, client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "smile"}))
    assert "2 captions changed" in summary
    assert (folder / "j.txt").read_bytes() == "mychar, 少女, 笑顔, smile".encode("utf-8")


def test_uncertain_captions_are_skipped_named_and_left_byte_identical(client, run_jobs, app):
    alone = {
        "ko.png": "mychar, 소녀, 미소".encode("euc-kr"),  # EUC-JP and GBK read these bytes as well
        "ru.png": "mychar, девушка, улыбка".encode("cp1251"),  # so do Greek and KOI8-R
        "ok.png": "mychar, 1girl",
    }
    folder = make_folder(app, captions=alone)
    dataset = open_dataset(client, run_jobs, folder)
    before = {name: (folder / name).read_bytes() for name in ("ko.txt", "ru.txt")}
    summary = follow(client, client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "smile"}))
    assert "1 caption changed" in summary
    assert "2 left unchanged because their encoding is uncertain" in summary
    assert "ko.txt" in summary and "ru.txt" in summary
    assert {name: (folder / name).read_bytes() for name in before} == before
    # Health lists them apart from pairing notes; never as something else.
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    block = re.search(r'id="h-encoding_uncertain".*?</section>', health, re.S).group(0)
    assert re.findall(r">([\w.]+)</a>", block) == ["ko.png", "ru.png"]


def test_short_captions_are_read_right_when_the_dataset_agrees(client, run_jobs, app):
    texts = ["mychar, девушка, улыбка", "mychar, длинные волосы, голубые глаза", "mychar, школьная форма, улица, ночь"]
    folder = make_folder(app, captions={f"{n}.png": text.encode("cp1251") for n, text in enumerate(texts)})
    dataset = open_dataset(client, run_jobs, folder)
    assert image_named(dataset, "0.png").caption == texts[0]
    assert dataset.settings["caption_encoding"] == "cp1251"
    follow(client, client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "smile"}))
    assert (folder / "0.txt").read_bytes() == (texts[0] + ", smile").encode("utf-8")


def test_bom_is_listed_fixed_in_one_click_and_never_exported(client, run_jobs, app):
    folder = make_folder(app, captions={"b.png": b"\xef\xbb\xbfmychar, 1girl", "c.png": "mychar, hat"})
    dataset = open_dataset(client, run_jobs, folder)
    _, archive = export(client, run_jobs, dataset)
    assert archive.read("b.txt") == b"mychar, 1girl"
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    assert "byte order mark" in health and "Rewrite without the byte order mark (1)" in health
    follow(client, client.post(f"/datasets/{dataset.id}/health/fix", data={"problem": "bom"}))
    assert (folder / "b.txt").read_bytes() == b"mychar, 1girl"
    assert (folder / "c.txt").read_bytes() == b"mychar, hat"  # untouched
    assert "byte order mark" not in client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)


def test_blank_first_line_is_flagged_fixed_and_exported_right(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": b"\r\nmychar, 1girl\r\n", "e.png": b"", "m.png": b"a, b\nc, d\n"})
    dataset = open_dataset(client, run_jobs, folder)
    _, metadata = export(client, run_jobs, dataset, format="metadata")
    assert metadata["a"] == {"tags": "mychar, 1girl"}
    job, archive = export(client, run_jobs, dataset)
    assert "e.txt" not in archive.namelist()  # never a 0-byte caption
    assert ["e.png", "empty caption left out (kohya refuses an empty caption file)"] in job.result["warnings"]
    assert archive.read("a.txt") == b"mychar, 1girl\n"
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert "⚠ lines" in grid
    editor = client.get(f"/datasets/{dataset.id}/images/{image_named(dataset, 'm.png').id}").get_data(as_text=True)
    assert "Several lines" in editor and ">a, b\nc, d\n</textarea>" in editor
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    assert "First line is empty" in health and "Several lines" in health
    follow(client, client.post(f"/datasets/{dataset.id}/health/fix", data={"problem": "first_line_empty"}))
    assert (folder / "a.txt").read_bytes() == b"mychar, 1girl\n"
    # Trigger-first fixes it too.
    (folder / "t.txt").write_bytes(b"\r\n1girl\r\n")
    save_image(folder / "t.png")
    client.post(f"/datasets/{dataset.id}/rescan")
    run_jobs()
    client.post(f"/datasets/{dataset.id}/settings", data={"name": dataset.name, "trigger": "mychar"})
    follow(client, client.post(f"/datasets/{dataset.id}/bulk", data={"action": "trigger"}))
    assert (folder / "t.txt").read_bytes() == b"mychar, 1girl\n"


def test_pairing_is_shown_in_grid_editor_and_health_never_as_encoding(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "from txt", "plain.png": "plain"})
    (folder / "a.caption").write_text("from caption")
    save_image(folder / "a.jpg", "blue")  # shares a.txt with a.png
    save_image(folder / "Case.png", "green")
    (folder / "case.txt").write_text("lower")
    dataset = open_dataset(client, run_jobs, folder)
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert grid.count("⚠ pairing") == 3 and "⚠ encoding" not in grid
    a = image_named(dataset, "a.png")
    assert a.caption == "from txt" and a.caption_warning is None
    editor = client.get(f"/datasets/{dataset.id}/images/{a.id}").get_data(as_text=True)
    assert "a.caption is also there; Tessera and trainers use a.txt" in editor
    assert "a.txt is also the caption of a.jpg" in editor
    assert "Caption file: <code>a.txt</code>" in editor
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    block = re.search(r'id="h-pairing".*?</section>', health, re.S).group(0)
    assert re.findall(r">([\w.]+)</a>", block) == ["Case.png", "a.jpg", "a.png"]
    assert "case.txt matches Case.png only by letter case" in block


def test_orientation_six_is_portrait_in_the_row_and_exported_upright(client, run_jobs, app):
    folder = empty_folder(app)
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = 6
    Image.new("RGB", (768, 512), "red").save(folder / "phone.jpg", exif=exif)
    (folder / "phone.txt").write_text("mychar")
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "phone.jpg")
    assert (image.width, image.height, image.orientation) == (512, 768, 6)
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    assert 'title="512×768 trains in the kohya SDXL bucket 832×1216">832×1216</span>' in grid
    job, archive = export(client, run_jobs, dataset)
    with Image.open(io.BytesIO(archive.read("phone.jpg"))) as exported:
        assert exported.size == (512, 768) and imaging.orientation(exported) == 1
    assert ["phone.jpg", "turned upright (EXIF orientation 6)"] in job.result["warnings"]
    assert "Rotated by EXIF orientation" in client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)


def test_transparency_is_listed_and_flattened_on_request(client, run_jobs, app):
    folder = empty_folder(app)
    cut = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    cut.paste((0, 0, 0, 0), (0, 0, 64, 32))
    cut.save(folder / "cut.png")
    dataset = open_dataset(client, run_jobs, folder)
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    assert re.search(r'id="h-alpha".*?cut\.png.*?50\.0% of pixels transparent', health, re.S)
    _, archive = export(client, run_jobs, dataset, flatten="1", background="#00ff00")
    with Image.open(io.BytesIO(archive.read("cut.png"))) as flat:
        assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (0, 255, 0)


def test_sixteen_bit_images_thumbnail_grey_and_are_not_near_duplicates(client, run_jobs, app):
    folder = empty_folder(app)
    ys, xs = np.indices((512, 512))
    Image.fromarray(np.where(((ys // 64) + (xs // 64)) % 2 == 0, 20000, 60000).astype(np.uint16)).save(folder / "board.png")
    Image.fromarray((20000 + xs * 80).astype(np.uint16)).save(folder / "ramp.png")
    dataset = open_dataset(client, run_jobs, folder)
    board = image_named(dataset, "board.png")
    thumb = client.get(f"/datasets/{dataset.id}/thumbs/{board.id}-{board.content_hash[:16]}.webp")
    with Image.open(io.BytesIO(thumb.get_data())) as image:
        levels = np.asarray(image.convert("L"))
    assert abs(int(np.percentile(levels, 5)) - 78) <= 3 and abs(int(np.percentile(levels, 95)) - 234) <= 3
    assert "Near duplicates" not in client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)


def test_duplicates_side_by_side_exclude_trash_and_restore(client, run_jobs, app):
    folder = empty_folder(app)
    pattern_image(folder / "one.png", 1, (96, 96))
    (folder / "copy.png").write_bytes((folder / "one.png").read_bytes())
    (folder / "one.txt").write_text("one")
    (folder / "copy.txt").write_text("copy")
    dataset = open_dataset(client, run_jobs, folder)
    one, copy = image_named(dataset, "one.png"), image_named(dataset, "copy.png")
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    block = re.search(r'id="h-exact".*?</section>', health, re.S).group(0)
    assert len(re.findall(r'class="ds-dupe[ "]', block)) == 2 and "Exclude from training" in block and "Move to trash" in block
    # Excluded images stay on disk and leave the export.
    follow(client, client.post(f"/datasets/{dataset.id}/exclude", data={"ids": str(copy.id), "excluded": "1"}))
    assert image_named(dataset, "copy.png").excluded
    job, archive = export(client, run_jobs, dataset)
    assert sorted(archive.namelist()) == ["one.png", "one.txt"]
    assert ["copy.png", "excluded from training"] in job.result["skipped"]
    # The trash is a folder in the dataset the image comes back from.
    follow(client, client.post(f"/datasets/{dataset.id}/images/{one.id}/trash"))
    assert not (folder / "one.png").exists() and not (folder / "one.txt").exists()
    assert image_named(dataset, "one.png") is None
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    entry = re.search(r'name="entry" value="([^"]+)"', health).group(1)
    follow(client, client.post(f"/datasets/{dataset.id}/trash/restore", data={"entry": entry}))
    run_jobs()
    assert (folder / "one.txt").read_text() == "one"
    assert image_named(dataset, "one.png") is not None
    assert not any((folder / ".tessera-trash").iterdir())


def test_tag_spellings_are_one_in_tag_list_and_filter_and_merge_in_health(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "long hair, photo (medium)", "b.png": "long_hair, photo_(medium)",
                                        "c.png": "long_hair, smile"})
    dataset = open_dataset(client, run_jobs, folder)
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    tag_list = re.search(r'id="tag-list".*?</ol>', grid, re.S).group(0)
    assert re.findall(r'<li data-tag="([^"]+)"', tag_list) == ["long_hair", "photo (medium)", "smile"]
    assert "matching" not in grid
    filtered = client.get(f"/datasets/{dataset.id}?q=long+hair").get_data(as_text=True)
    assert "3 match the filter" in filtered
    filtered = client.get(f"/datasets/{dataset.id}?q=photo_(medium)").get_data(as_text=True)
    assert "2 match the filter" in filtered
    health = client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)
    assert "One tag, several spellings" in health
    follow(client, client.post(f"/datasets/{dataset.id}/health/merge",
                               data={"into": "long hair", "variants": ["long hair", "long_hair"]}))
    assert (folder / "b.txt").read_text() == "long hair, photo_(medium)"
    assert (folder / "c.txt").read_text() == "long hair, smile"
    assert (folder / "a.txt").read_text() == "long hair, photo (medium)"


def test_editor_tag_panel_adds_and_removes_by_click(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "tok, long_hair", "b.png": "tok, long hair, smile", "c.png": "smile"})
    dataset = open_dataset(client, run_jobs, folder)
    a = image_named(dataset, "a.png")
    page = client.get(f"/datasets/{dataset.id}/images/{a.id}").get_data(as_text=True)
    panel = re.search(r'class="ds-tag-panel".*?</ul>', page, re.S).group(0)
    buttons = re.findall(r'aria-pressed="(\w+)".*?>([^<]+)<span class="count">(\d+)</span>', panel, re.S)
    assert [(pressed, tag.strip(), int(n)) for pressed, tag, n in buttons] == [
        ("true", "long hair", 2), ("false", "smile", 2), ("true", "tok", 2)]
    # Clicking the pressed "long hair" removes the spelling the caption uses.
    assert '"tag": "long_hair"' in panel
    version = re.search(r'id="caption-version" name="version" value="([0-9a-f]*)"', page).group(1)
    client.post(f"/datasets/{dataset.id}/images/{a.id}/tags",
                data={"action": "remove", "tag": "long_hair", "text": "tok, long_hair", "version": version})
    assert (folder / "a.txt").read_text() == "tok"


def test_an_image_outside_the_remembered_filter_says_so(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    client.get(f"/datasets/{dataset.id}?q=hat")  # remembered: only b.png matches
    c = image_named(dataset, "c.png")
    page = client.get(f"/datasets/{dataset.id}/images/{c.id}").get_data(as_text=True)
    assert "This image is outside your filter <code>hat</code> (1 image match" in page
    assert f'href="/datasets/{dataset.id}/images/{c.id}?clear_filter=1"' in page
    assert 'id="prev-image"' in page and 'id="next-image"' in page  # browsing all images, not stranded
    assert "3 of 4" in page
    cleared = client.get(f"/datasets/{dataset.id}/images/{c.id}?clear_filter=1")
    page = client.get(cleared.headers["Location"]).get_data(as_text=True)
    assert "outside your filter" not in page and "3 of 4" in page


def test_grid_fills_itself_when_the_scan_ends(client, run_jobs, app):
    folder = make_folder(app)
    response = client.post("/datasets/", data={"folder": str(folder), "name": "set"})
    page_url = response.headers["Location"]
    page = client.get(page_url).get_data(as_text=True)
    assert "Scanning… the images appear here" in page
    job_id = re.search(r'id="job-([^"]+)"', page).group(1)
    run_jobs()
    status = client.get(f"/jobs/{job_id}/status", headers={"HX-Request": "true", "HX-Current-URL": f"http://localhost{page_url}"})
    body = status.get_data(as_text=True)
    grid_url = re.search(r'hx-get="([^"]+)" hx-trigger="load" hx-target="#ds-grid"', body).group(1)
    rows = client.get(grid_url).get_data(as_text=True)
    assert rows.count('class="ds-cell') == 4
    # Elsewhere (the jobs page) the same status has no grid to fill.
    elsewhere = client.get(f"/jobs/{job_id}/status", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/jobs/"})
    assert "#ds-grid" not in elsewhere.get_data(as_text=True)


def test_export_only_the_selected_or_filtered_images_and_warn_of_known_problems(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    a, b = image_named(dataset, "a.png"), image_named(dataset, "b.png")
    form = client.get(f"/datasets/{dataset.id}/export?scope=selected&ids={a.id}&ids={b.id}").get_data(as_text=True)
    assert "Exporting 2 selected images" in form
    _, archive = export(client, run_jobs, dataset, scope="selected", ids=[str(a.id), str(b.id)])
    assert sorted(archive.namelist()) == ["a.png", "a.txt", "b.png", "b.txt"]
    job, archive = export(client, run_jobs, dataset, scope="filtered", q="long hair")
    assert sorted(archive.namelist()) == ["a.png", "a.txt", "c.png", "c.txt"]
    job, _ = export(client, run_jobs, dataset)
    assert "1 image without a caption (trainers auto-caption them or train them untagged)" in job.result["problems"]
    assert "Health knows of" in client.get(f"/datasets/{dataset.id}/export").get_data(as_text=True)


def test_the_bulk_forms_export_and_crop_buttons_post_the_selection_never_a_url(client, run_jobs, app):
    """The grid's bulk form carries its CSRF token and the selection: its "Export these images…" and
    "Crop to buckets…" buttons must POST them, not put them in a URL (logs, history, the request-line limit)."""
    dataset = open_dataset(client, run_jobs, make_folder(app))
    grid = client.get(f"/datasets/{dataset.id}").get_data(as_text=True)
    for label in ("Export these images…", "Crop to buckets…"):
        button = re.search(r'<button[^>]*>' + re.escape(label) + '</button>', grid).group(0)
        assert 'formmethod="get"' not in button
        assert re.search(r'formaction="[^"]+/choose"', button), button
    a, b = image_named(dataset, "a.png"), image_named(dataset, "b.png")
    chosen = {"csrf_token": "x", "scope": "selected", "ids": [str(a.id), str(b.id)], "action": "", "old": "", "new": ""}
    export_form = client.post(f"/datasets/{dataset.id}/export/choose", data=chosen).get_data(as_text=True)
    assert "Exporting 2 selected images" in export_form
    assert sorted(re.findall(r'name="ids" value="(\d+)"', export_form)) == sorted([str(a.id), str(b.id)])
    crop_form = client.post(f"/datasets/{dataset.id}/crop-buckets/choose", data=chosen).get_data(as_text=True)
    assert re.search(r"Cropping [^<]*2 selected images?</strong> \(2\)", crop_form), crop_form[:200]
    assert sorted(re.findall(r'name="ids" value="(\d+)"', crop_form)) == sorted([str(a.id), str(b.id)])


def test_an_export_or_crop_of_a_filter_too_deep_to_use_says_so(client, run_jobs, app):
    """A filter the filter limits refuse (nested past 20 levels) is a clear answer on the export and
    crop-to-buckets forms and when starting either, never a server error."""
    dataset = open_dataset(client, run_jobs, make_folder(app))
    deep = {"scope": "filtered", "q": "(" * 60 + "long hair" + ")" * 60}
    form = client.get(f"/datasets/{dataset.id}/export", query_string=deep)
    assert form.status_code == 200 and "nests too deeply" in form.get_data(as_text=True)
    chosen = client.post(f"/datasets/{dataset.id}/export/choose", data=deep)
    assert chosen.status_code == 200 and "nests too deeply" in chosen.get_data(as_text=True)
    started = client.post(f"/datasets/{dataset.id}/export", data={"format": "training", **deep})
    assert started.status_code == 422 and "nests too deeply" in started.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.kind == "datasets.export")) == 0
    # The crop-to-buckets form alike: the problem said, all images offered instead.
    for crop_form in (client.get(f"/datasets/{dataset.id}/crop-buckets", query_string=deep),
                      client.post(f"/datasets/{dataset.id}/crop-buckets/choose", data=deep)):
        body = crop_form.get_data(as_text=True)
        assert crop_form.status_code == 200 and "nests too deeply" in body
        assert 'name="scope" value="all"' in body
    started = client.post(f"/datasets/{dataset.id}/crop-buckets", data={"where": "beside", **deep})
    assert started.status_code == 422 and "nests too deeply" in started.get_data(as_text=True)


def test_crop_writes_a_new_image_with_the_caption_and_keeps_the_original(client, run_jobs, app):
    folder = empty_folder(app)
    pattern_image(folder / "wide.png", 3, (768, 512))
    (folder / "wide.txt").write_text("mychar, 1girl")
    dataset = open_dataset(client, run_jobs, folder)
    image = image_named(dataset, "wide.png")
    original = (folder / "wide.png").read_bytes()
    page = client.get(f"/datasets/{dataset.id}/images/{image.id}/crop").get_data(as_text=True)
    assert 'value="1216x832" selected' in page  # kohya SDXL's bucket for 3:2
    response = client.post(f"/datasets/{dataset.id}/images/{image.id}/crop",
                           data={"bucket": "1024x1024", "left": "256", "top": "0", "right": "768", "bottom": "512",
                                 "resize": "1", "exclude_original": "1"})
    assert response.status_code == 303
    run_jobs()
    assert (folder / "wide.png").read_bytes() == original
    with Image.open(folder / "wide-crop-1024x1024.png") as crop, Image.open(folder / "wide.png") as whole:
        assert crop.size == (1024, 1024)
        expected = whole.convert("RGB").crop((256, 0, 768, 512)).resize((1024, 1024))
        assert np.abs(np.asarray(crop.convert("RGB"), dtype=int) - np.asarray(expected, dtype=int)).mean() < 4
    assert (folder / "wide-crop-1024x1024.txt").read_text() == "mychar, 1girl"
    assert image_named(dataset, "wide.png").excluded
    assert image_named(dataset, "wide-crop-1024x1024.png") is not None
    assert "1024×1024" in client.get(f"/datasets/{dataset.id}/health").get_data(as_text=True)


def test_rows_hold_every_new_column(client, run_jobs, app):
    dataset = open_dataset(client, run_jobs, make_folder(app))
    row = db.session.scalar(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id))
    assert (row.orientation, row.alpha, row.caption_problems, row.pairing_note, row.excluded) == (1, 0.0, "", None, False)
