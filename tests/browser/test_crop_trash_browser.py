"""A user crops a photo with the automatic box (adjusting it first), and restores from and empties the trash."""
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from playwright.sync_api import expect

from app.datasets.trash import move_to_trash
from tests.datasets_helpers import drawn_face


def test_the_crop_tool_proposes_the_face_and_the_user_adjusts_it(logged_in, live_server, live_user):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "people"
    folder.mkdir(parents=True)
    noise = np.random.default_rng(5).integers(60, 120, (800, 1200, 3)).astype(np.uint8)
    photo = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
    photo.paste(drawn_face(220).convert("RGB"), (900, 200))
    photo.save(folder / "off centre.png")
    (folder / "off centre.txt").write_text("mychar, 1girl")
    head = (900 + 22, 200 + 22, 900 + 198, 200 + 253)
    original = (folder / "off centre.png").read_bytes()

    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    page.locator(".ds-cell a.ds-thumb").first.click()
    page.get_by_role("link", name="Crop to a bucket…").click()
    expect(page.locator("#crop-note")).to_contain_text("1 face found")

    def box() -> list[int]:
        return [int(page.locator(f"#crop-form input[name={n}]").input_value()) for n in ("left", "top", "right", "bottom")]

    page.get_by_label("Bucket (width × height)").select_option("1024x1024")
    # Functions, not bare expressions: Playwright evaluates a bare expression string, which the page's
    # CSP (no 'unsafe-eval') refuses with a console error.
    page.wait_for_function("() => document.querySelector('#crop-form input[name=right]').value - "
                           "document.querySelector('#crop-form input[name=left]').value == 800")
    auto = box()
    assert auto[0] > 200 and auto[0] <= head[0] and auto[2] >= head[2]  # moved right, past the centred 200
    # On screen the box holds the outlined face.
    shown, face = page.locator("#crop-box").bounding_box(), page.locator(".ds-crop-face").first.bounding_box()
    assert shown["x"] <= face["x"] and face["x"] + face["width"] <= shown["x"] + shown["width"] + 1
    # The user drags it left, takes the centre, then asks for the automatic box again.
    page.locator("#crop-box").focus()
    page.keyboard.press("Shift+ArrowLeft")
    assert box()[0] < auto[0]
    page.get_by_role("button", name="Centre (what the trainer keeps)").click()
    assert box()[0] == 200
    page.get_by_role("button", name="Automatic (keep the face or subject)").click()
    expect(page.locator("#crop-note")).to_contain_text("Automatic: 1 face found")
    page.wait_for_function("left => document.querySelector('#crop-form input[name=left]').value == left", arg=str(auto[0]))
    page.get_by_role("button", name="Write the crop as a new image").click()
    page.wait_for_url("**/images/*")
    written = folder / "off centre-crop-1024x1024.png"
    with Image.open(written) as crop:
        assert crop.size == (1024, 1024)
    assert (folder / "off centre.png").read_bytes() == original
    assert (folder / "off centre-crop-1024x1024.txt").read_text() == "mychar, 1girl"
    assert faults == []


def test_the_trash_page_restores_and_empties(logged_in, live_server, live_user, tmp_path):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "junk"
    folder.mkdir(parents=True)
    names = ["keep.png", "blurry #1.png", "dup (copy).png", "ünïcode ☃.png"]
    for n, name in enumerate(names):
        Image.new("RGB", (64, 64), (n * 60, 0, 0)).save(folder / name)
        (folder / name).with_suffix(".txt").write_text(f"caption {n}")
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    for name in names[1:]:
        move_to_trash(folder, name, str(Path(name).with_suffix(".txt")))
    page.get_by_role("link", name="Show the images").first.click()
    page.get_by_role("link", name="Trash", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^3 items · "))).to_be_visible()
    page.get_by_role("button", name="Restore blurry #1.png").click()
    expect(page.locator(".flash").first).to_contain_text("Restored blurry #1.png")
    assert (folder / "blurry #1.png").exists() and (folder / "blurry #1.txt").read_text() == "caption 1"
    page.get_by_role("link", name="Empty trash…").click()
    confirm = page.get_by_role("button", name="Delete 2 items for good")
    expect(page.locator("#h-confirm")).to_have_text(re.compile(r"Delete 2 items \([\d.]+ (Bytes|kB)\) for good\?"))
    page.screenshot(path=str(tmp_path / "trash-confirm.png"))
    confirm.click()
    expect(page.get_by_text("The trash is empty.")).to_be_visible()
    assert not any((folder / ".tessera-trash").iterdir())
    assert sorted(p.name for p in folder.glob("*.png")) == ["blurry #1.png", "keep.png"]
    assert faults == []
