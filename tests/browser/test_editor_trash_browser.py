"""A user moves images to the trash from the editor (button and Delete key), restores one from the
notice, and an editor left open in another tab on a trashed image says it is gone."""
import re

from PIL import Image
from playwright.sync_api import expect


def open_folder(page, live_server, folder) -> None:
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()


def test_move_to_trash_from_the_editor_and_restore(logged_in, live_server, live_user):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "shoot"
    folder.mkdir(parents=True)
    names = ["a 1.png", "b 2.png", "c 3.png", "ü 4.png"]
    for n, name in enumerate(names):
        Image.new("RGB", (64, 64), (n * 60, 20, 20)).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(f"tok, tag{n}")
    original = (folder / "a 1.png").read_bytes()
    open_folder(page, live_server, folder)
    page.locator(".ds-cell a.ds-thumb").first.click()
    expect(page.get_by_role("button", name="Move to trash")).to_be_in_viewport()
    expect(page.locator(".ds-keys")).to_contain_text("move the image and its caption to the trash")

    # A second tab on the same image, as a user with two tabs has.
    other = page.context.new_page()
    other.goto(page.url)

    # Typed but not yet saved: the text is saved first, so the caption in the trash is the latest.
    page.locator("#caption-text").fill("tok, tag0, typed last")
    page.get_by_role("button", name="Move to trash").click()
    expect(page.locator("#trashed-notice")).to_contain_text("Moved a 1.png and its caption a 1.txt to the trash.")
    expect(page.locator("#caption-text")).to_have_value("tok, tag1")  # the next image, b 2.png
    assert not (folder / "a 1.png").exists()
    trashed = next((folder / ".tessera-trash").iterdir()) / "files"
    assert (trashed / "a 1.png").read_bytes() == original
    assert (trashed / "a 1.txt").read_text() == "tok, tag0, typed last"

    # The other tab types into the gone image's caption: it says so, and keeps the text on screen.
    other.locator("#caption-text").fill("tok, from the other tab")
    expect(other.locator("#save-status")).to_contain_text("no longer in the dataset")
    expect(other.locator("#caption-text")).to_have_value("tok, from the other tab")
    assert not (folder / "a 1.txt").exists()
    other.close()

    # Delete on a focused chip button is not "trash the image": nothing moves.
    page.get_by_role("button", name="Remove tag1").focus()
    page.keyboard.press("Delete")
    page.locator("h2#chips-heading").click()  # the page itself has focus now
    assert (folder / "b 2.png").exists()
    # The Delete key (outside text fields and buttons) moves the next one; Restore brings it back.
    page.keyboard.press("Delete")
    expect(page.locator("#trashed-notice")).to_contain_text("Moved b 2.png")
    expect(page.locator("#caption-text")).to_have_value("tok, tag2")
    page.get_by_role("button", name="Restore it").click()
    expect(page.locator(".flash").first).to_contain_text("Restored b 2.png")
    assert (folder / "b 2.png").exists() and (folder / "b 2.txt").read_text() == "tok, tag1"
    expect(page.locator("#trashed-notice")).to_have_count(0)
    assert re.search(r"/images/\d+$", page.url)
    assert faults == []
