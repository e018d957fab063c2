"""A user tags from the keyboard, renames a tag across the dataset, undoes it and exports a zip."""
import io
import zipfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import expect


def make_dataset(user, captions: dict[str, str] | None = None, name: str = "faces") -> Path:
    # The live server's dataset root is the default one: the user's own folder inside its data folder.
    folder = user.dataset_root / name
    folder.mkdir(parents=True)
    captions = captions or {"a.png": "tok, long hair, smile", "b.png": "tok, long hair, hat", "c.png": "tok, short hair"}
    for colour, (name, caption) in zip(("red", "blue", "green"), captions.items()):
        Image.new("RGB", (96, 64), colour).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(caption)
    return folder


def test_tag_rename_undo_and_export(logged_in, live_server, live_user):
    page = logged_in
    folder = make_dataset(live_user)
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


def test_tag_panel_pages_and_finds_among_many_tags(logged_in, live_server, live_user):
    page = logged_in
    tags = [f"tag {n:04d}" for n in range(450)]
    folder = make_dataset(live_user, {"a.png": ", ".join(tags[:300]), "b.png": ", ".join(tags[150:]), "c.png": "tok"}, "many")
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


def test_combobox_keyboard_and_the_grid_filling_itself(logged_in, live_server, live_user):
    page = logged_in
    errors = []
    page.on("console", lambda message: errors.append(f"{message.text} {message.location}") if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}") if response.status >= 400 else None)
    folder = live_user.dataset_root / "kb"
    folder.mkdir(parents=True)
    captions = {"a.png": "tok, 1girl, long hair", "b.png": "tok, hat", "c.png": "tok, 1girl, smile"}
    for colour, (name, caption) in zip(("red", "blue", "green"), captions.items()):
        Image.new("RGB", (96, 64), colour).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(caption)

    # Opening the folder: the grid fills when the scan job ends, without a reload.
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.wait_for_url("**/datasets/*")
    page.locator("#ds-grid .ds-cell").nth(2).wait_for(timeout=30_000)
    assert page.locator("#ds-grid .ds-name").all_inner_texts() == ["a.png", "b.png", "c.png"]

    page.locator(".ds-cell a.ds-thumb").nth(1).click()
    page.wait_for_url("**/images/*")
    tag_input = page.get_by_role("combobox", name="Add a tag")
    listbox = page.get_by_role("listbox", name="Tag suggestions")

    # 1gi, ↓, Enter adds 1girl (the highlighted suggestion), not "1gi".
    tag_input.focus()
    page.keyboard.type("1gi")
    option = listbox.get_by_role("option").first
    option.wait_for()
    assert option.inner_text().split("\n")[0] == "1girl" and "2 images" in option.inner_text()
    page.keyboard.press("ArrowDown")
    assert option.get_attribute("aria-selected") == "true"
    assert tag_input.get_attribute("aria-activedescendant") == option.get_attribute("id")
    assert tag_input.get_attribute("aria-expanded") == "true"
    page.keyboard.press("Enter")
    page.locator(".ds-chip span", has_text="1girl").wait_for()
    assert (folder / "b.txt").read_text() == "tok, hat, 1girl"

    # Esc closes the list and leaves the typing where it was.
    tag_input = page.get_by_role("combobox", name="Add a tag")
    tag_input.focus()
    page.keyboard.type("lon")
    listbox.get_by_role("option").first.wait_for()
    page.keyboard.press("Escape")
    assert listbox.is_hidden()
    assert tag_input.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.id") == "tag-input"

    # Tab takes the highlighted suggestion into the field without adding it yet.
    page.keyboard.press("Backspace")
    page.keyboard.type("n")
    listbox.get_by_role("option").first.wait_for()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    assert tag_input.input_value() == "long hair"
    assert listbox.is_hidden()
    assert (folder / "b.txt").read_text() == "tok, hat, 1girl"

    # The dataset's tags beside the image: one click adds, another removes.
    page.get_by_role("button", name="smile").click()
    page.locator(".ds-chip span", has_text="smile").wait_for()
    assert (folder / "b.txt").read_text() == "tok, hat, 1girl, smile"
    assert errors == []
