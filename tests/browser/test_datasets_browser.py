"""A user tags from the keyboard, renames a tag across the dataset, undoes it and exports a zip."""
import io
import zipfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect


def make_dataset(app_env, captions: dict[str, str] | None = None, name: str = "faces") -> Path:
    # The live server's dataset root is the default one: ada's own folder inside its data folder.
    folder = Path(app_env["TESSERA_DATA_DIR"]) / "datasets" / "ada" / name
    folder.mkdir(parents=True)
    captions = captions or {"a.png": "tok, long hair, smile", "b.png": "tok, long hair, hat", "c.png": "tok, short hair"}
    for colour, (name, caption) in zip(("red", "blue", "green"), captions.items()):
        Image.new("RGB", (96, 64), colour).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(caption)
    return folder


def test_tag_rename_undo_and_export(logged_in, live_server, app_env):
    page = logged_in
    folder = make_dataset(app_env)
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    page.locator(".ds-cell").nth(2).wait_for()
    assert page.locator(".ds-name").all_inner_texts() == ["a.png", "b.png", "c.png"]

    # Tag a.png from the keyboard: "/" focuses the tag input, Enter adds, Alt+R marks reviewed, Alt+N goes on.
    page.locator(".ds-cell a.ds-thumb").first.click()
    page.wait_for_url("**/images/*")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "tag-input"
    page.keyboard.type("blue eyes")
    page.keyboard.press("Enter")
    page.locator(".ds-chip span", has_text="blue eyes").wait_for()
    assert (folder / "a.txt").read_text() == "tok, long hair, smile, blue eyes"
    page.keyboard.press("Escape")
    page.keyboard.press("Alt+R")
    page.locator("#reviewed-state", has_text="Reviewed").wait_for()
    first_url = page.url
    page.keyboard.press("Alt+N")
    page.wait_for_url(lambda url: url != first_url)
    assert page.locator("textarea#caption-text").input_value() == "tok, long hair, hat"

    # Typing in the caption saves by itself; moving on with Alt+P saves what is still pending.
    page.locator("textarea#caption-text").fill("tok, long hair, hat, outdoors")
    page.keyboard.press("Alt+P")
    page.wait_for_url(first_url)
    assert (folder / "b.txt").read_text() == "tok, long hair, hat, outdoors"

    # Rename "long hair" across the dataset, then undo it.
    page.get_by_role("link", name="Back to the grid").click()
    page.get_by_text("Edit captions in bulk").click()
    page.get_by_label("Tag", exact=True).fill("long hair")
    page.get_by_label("New name", exact=True).fill("long_hair")
    page.get_by_role("button", name="Rename", exact=True).click()
    page.locator(".flash", has_text="2 captions changed").wait_for()
    assert (folder / "a.txt").read_text() == "tok, long_hair, smile, blue eyes"
    assert (folder / "b.txt").read_text() == "tok, long_hair, hat, outdoors"
    assert page.locator("#tag-list li[data-tag='long_hair'] .muted").inner_text() == "2"
    page.locator(".ds-last-change").get_by_role("button", name="Undo").click()
    page.locator(".flash", has_text="Undid").wait_for()
    assert (folder / "a.txt").read_text() == "tok, long hair, smile, blue eyes"
    assert (folder / "b.txt").read_text() == "tok, long hair, hat, outdoors"
    assert page.locator("#tag-list li[data-tag='long_hair']").count() == 0

    # Export a training zip and check what is inside.
    page.get_by_role("link", name="Export", exact=True).click()
    page.get_by_label("Strip escapes", exact=False).check()
    page.get_by_role("button", name="Export", exact=True).click()
    link = page.get_by_role("link", name="Download")
    link.wait_for(timeout=30_000)
    with page.expect_download() as download_info:
        link.click()
    data = Path(download_info.value.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a.png", "a.txt", "b.png", "b.txt", "c.png", "c.txt"]
        assert archive.read("a.txt").decode() == "tok, long hair, smile, blue eyes"
        assert archive.read("b.png") == (folder / "b.png").read_bytes()


def test_tag_panel_pages_and_finds_among_many_tags(logged_in, live_server, app_env):
    page = logged_in
    tags = [f"tag {n:04d}" for n in range(450)]
    folder = make_dataset(app_env, {"a.png": ", ".join(tags[:300]), "b.png": ", ".join(tags[150:]), "c.png": "tok"}, "many")
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    rows = page.locator("#tag-list > li[data-tag]")
    rows.nth(199).wait_for()
    assert rows.count() == 200
    page.get_by_role("button", name="Show more tags (251 left)").click()
    rows.nth(399).wait_for()
    page.get_by_role("button", name="Show more tags (51 left)").click()
    rows.nth(450).wait_for()
    assert rows.count() == 451 and page.locator(".ds-tag-more").count() == 0
    page.get_by_label("Find a tag in the list").fill("tag_042")
    expect(rows).to_have_count(10)
    assert rows.first.get_attribute("data-tag").startswith("tag 042")
