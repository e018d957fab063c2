"""Dataset-wide tag actions, one undoable batch each; the history page; the health report."""
import re
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.models import CaptionBatch, CaptionEdit, DatasetTag
from app.extensions import db
from tests.datasets_helpers import image_named, make_folder, open_dataset, pattern_image


@pytest.fixture
def dataset(client, run_jobs, app):
    return open_dataset(client, run_jobs, make_folder(app))


def captions(dataset) -> dict[str, str]:
    root = Path(dataset.root)
    return {path.name: path.read_text() for path in sorted(root.glob("*.txt"))}


def tag_counts(dataset) -> dict[str, int]:
    rows = db.session.execute(db.select(DatasetTag.tag, db.func.count()).where(DatasetTag.dataset_id == dataset.id)
                              .group_by(DatasetTag.tag)).all()
    return dict(rows)


def test_rename_across_the_dataset_then_undo(client, dataset):
    before = captions(dataset)
    mtimes = {name: (Path(dataset.root) / name).stat().st_mtime_ns for name in before}
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "long hair", "new": "long_hair"})
    assert response.status_code == 303
    after = captions(dataset)
    assert after == {"a.txt": "tok, 1girl, long_hair, smile", "b.txt": "tok, 1girl, short hair, hat", "c.txt": "1boy, long_hair"}
    # Only the files that change are written.
    assert (Path(dataset.root) / "b.txt").stat().st_mtime_ns == mtimes["b.txt"]
    counts = tag_counts(dataset)
    assert counts["long_hair"] == 2 and "long hair" not in counts
    [batch] = db.session.scalars(db.select(CaptionBatch)).all()
    assert batch.image_count == 2 and batch.kind == "bulk"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "2 captions changed" in page and "Last change: Rename tag" in page

    undo = client.post(f"/datasets/{dataset.id}/history/{batch.id}/undo")
    assert undo.status_code == 303
    assert captions(dataset) == before
    assert tag_counts(dataset)["long hair"] == 2
    db.session.expire_all()
    assert batch.undone_at is not None
    assert image_named(dataset, "a.png").caption == before["a.txt"]
    # Undoing the undo redoes.
    redo = db.session.scalar(db.select(CaptionBatch).where(CaptionBatch.undo_of == batch.id))
    client.post(f"/datasets/{dataset.id}/history/{redo.id}/undo")
    assert captions(dataset) == after


def test_rename_onto_an_existing_tag_merges_only_when_asked(client, dataset):
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "short hair", "new": "long hair"})
    assert captions(dataset)["b.txt"] == "tok, 1girl, long hair, hat"
    # A rename changes exactly the tag it names; the duplicate it makes stays until "deduplicate".
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "1girl", "new": "tok"})
    assert captions(dataset)["a.txt"] == "tok, tok, long hair, smile"
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "normalise", "normaliser": "dedupe"})
    assert captions(dataset)["a.txt"] == "tok, long hair, smile"


def test_undo_leaves_captions_edited_since_alone(client, dataset):
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "delete", "old": "1girl"})
    batch = db.session.scalar(db.select(CaptionBatch))
    image = image_named(dataset, "a.png")
    client.post(f"/datasets/{dataset.id}/images/{image.id}/caption",
                data={"text": "my later edit", "version": image.caption_version})
    response = client.post(f"/datasets/{dataset.id}/history/{batch.id}/undo")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "skipped because they changed" in page and "a.png" in page
    assert captions(dataset)["a.txt"] == "my later edit"
    assert captions(dataset)["b.txt"] == "tok, 1girl, short hair, hat"


def test_file_changed_outside_is_not_overwritten_by_a_bulk_edit(client, dataset):
    path = Path(dataset.root) / "a.txt"
    path.write_text("edited in another program")
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "new tag"})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "changed on disk since the last scan" in page
    assert path.read_text() == "edited in another program"
    assert captions(dataset)["c.txt"] == "1boy, long hair, new tag"
    assert (Path(dataset.root) / "d.txt").read_text() == "new tag"  # an uncaptioned image gets a caption file


def test_scopes_selected_and_filtered(client, dataset):
    a, c = image_named(dataset, "a.png"), image_named(dataset, "c.png")
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "picked", "scope": "selected",
                                                      "ids": [str(a.id), str(c.id)]})
    assert [name for name, text in captions(dataset).items() if "picked" in text] == ["a.txt", "c.txt"]
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "remove", "tags": "picked, smile", "scope": "filtered",
                                                      "q": "1girl"})
    assert captions(dataset)["a.txt"] == "tok, 1girl, long hair"
    assert captions(dataset)["c.txt"] == "1boy, long hair, picked"
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "add", "tags": "x", "scope": "selected"})
    assert "Select some images first" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_find_replace_normalise_and_trigger(client, dataset):
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": r"(\w+) hair", "replace": r"\1_hair", "regex": "1"})
    assert captions(dataset)["c.txt"] == "1boy, long_hair"
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "normalise", "normaliser": "underscores_to_spaces"})
    assert captions(dataset)["c.txt"] == "1boy, long hair"
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "trigger"})
    assert "trigger word first" in client.get(response.headers["Location"]).get_data(as_text=True)
    client.post(f"/datasets/{dataset.id}/settings", data={"name": dataset.name, "trigger": "mychar"})
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "trigger"})
    assert captions(dataset)["c.txt"] == "mychar, 1boy, long hair"
    assert captions(dataset)["a.txt"] == "mychar, tok, 1girl, long hair, smile"
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "(", "regex": "1"})
    assert "Invalid regular expression" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(CaptionBatch.id))) == 3


def test_history_page_lists_steps_with_undo(client, dataset):
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "delete", "old": "hat"})
    page = client.get(f"/datasets/{dataset.id}/history").get_data(as_text=True)
    assert "Delete tag “hat” (all images)" in page and 'aria-label="Undo Delete tag' in page
    assert db.session.scalar(db.select(db.func.count(CaptionEdit.id))) == 1


def test_health_lists_problems_with_links(client, run_jobs, app):
    folder = make_folder(app, captions={"a.png": "ok", "b.png": "", "c.png": None})
    for seed, name in enumerate(("a.png", "b.png", "c.png")):
        pattern_image(folder / name, seed, (64 + seed, 48))
    pattern_image(folder / "wide.png", 10, (600, 100))
    pattern_image(folder / "big.png", 11, (600, 600))
    (folder / "big.txt").write_text("big")
    (folder / "copy.png").write_bytes((folder / "big.png").read_bytes())
    (folder / "copy.txt").write_text("copy")
    with Image.open(folder / "big.png") as image:
        image.resize((512, 512)).save(folder / "big_resized.jpg", quality=85)
    (folder / "big_resized.txt").write_text("resized")
    (folder / "broken.png").write_bytes(b"not an image")
    dataset = open_dataset(client, run_jobs, folder)
    page = client.get(f"/datasets/{dataset.id}/health?min_side=200").get_data(as_text=True)

    def section(title: str) -> list[str]:
        block = re.search(re.escape(title) + r".*?</section>", page, re.S).group(0)
        return re.findall(r">([\w.]+)</a>", block)

    assert section("Corrupt or too large") == ["broken.png"]
    assert section("Smaller than 200 px") == ["a.png", "b.png", "c.png", "wide.png"]
    assert section("Extreme aspect ratio") == ["wide.png"]
    assert section("No caption file") == ["broken.png", "c.png", "wide.png"]
    assert section("Empty caption") == ["b.png"]
    assert section("Exact duplicates") == ["big.png", "copy.png"]
    assert section("Near duplicates") == ["big.png", "big_resized.jpg", "copy.png"]
    broken = image_named(dataset, "broken.png")
    assert f'href="/datasets/{dataset.id}/images/{broken.id}"' in page


def test_tricky_caption_files_round_trip(client, run_jobs, app):
    tricky = {
        "bom.png": "\ufefftok, smile".encode("utf-8"),
        "crlf.png": b"tok, smile\r\nalt line, smile\r\n",
        "escapes.png": "tok, star \\(symbol\\), smile".encode(),
        "dupes.png": b"tok, smile, smile, hat",
        "empty.png": b"",
        "lines.png": b"tok, smile\nsecond, hat\n",
    }
    folder = make_folder(app, captions=tricky)
    dataset = open_dataset(client, run_jobs, folder)
    original = {name: path.read_bytes() for name, path in ((p.name, p) for p in folder.glob("*.txt"))}
    # Opening each image in the editor shows the caption as written (BOM and CR gone, nothing else).
    bom = image_named(dataset, "bom.png")
    page = client.get(f"/datasets/{dataset.id}/images/{bom.id}").get_data(as_text=True)
    assert ">tok, smile</textarea>" in page
    # An edit that concerns none of them writes none of them.
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "absent", "new": "x"})
    assert {p.name: p.read_bytes() for p in folder.glob("*.txt")} == original
    # A rename touches only the tag: escapes, other lines, duplicates elsewhere are kept; UTF-8, no BOM, \n.
    client.post(f"/datasets/{dataset.id}/bulk", data={"action": "rename", "old": "smile", "new": "grin"})
    assert (folder / "bom.txt").read_bytes() == b"tok, grin"
    assert (folder / "crlf.txt").read_bytes() == b"tok, grin\nalt line, grin\n"
    assert (folder / "escapes.txt").read_bytes() == "tok, star \\(symbol\\), grin".encode()
    assert (folder / "dupes.txt").read_bytes() == b"tok, grin, grin, hat"  # each duplicate renamed, none merged
    assert (folder / "empty.txt").read_bytes() == b""
    assert (folder / "lines.txt").read_bytes() == b"tok, grin\nsecond, hat\n"
    # And the whole step undoes back to the very text each file had (normalised to UTF-8 and \n).
    batch = db.session.scalar(db.select(CaptionBatch).order_by(CaptionBatch.created_at.desc()))
    client.post(f"/datasets/{dataset.id}/history/{batch.id}/undo")
    assert (folder / "crlf.txt").read_bytes() == b"tok, smile\nalt line, smile\n"
    assert (folder / "dupes.txt").read_bytes() == b"tok, smile, smile, hat"
    # The untouched originals (with BOM and CRLF) are kept in the backup folder.
    backups = Path(app.config["DATA_DIR"]) / "caption-backups" / str(dataset.id)
    assert (backups / "crlf.txt").read_bytes() == b"tok, smile\r\nalt line, smile\r\n"
    assert (backups / "bom.txt").read_bytes() == "\ufefftok, smile".encode("utf-8")


def test_bad_replacement_changes_nothing(client, dataset):
    before = captions(dataset)
    response = client.post(f"/datasets/{dataset.id}/bulk", data={"action": "replace", "find": "hair", "replace": r"\9", "regex": "1"})
    assert "Invalid replacement: no such group" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert captions(dataset) == before
    assert db.session.scalar(db.select(db.func.count(CaptionBatch.id))) == 0
