"""Keyboard-only tagging at full speed: "1gi ↓ Enter" typed before the suggestions arrive still takes
1girl (the ↓ waits for the list, the Enter for the ↓), and a tag nothing suggests goes in as typed."""
import re

from PIL import Image
from playwright.sync_api import expect


def test_a_fast_1gi_down_enter_takes_the_suggestion(logged_in, live_server, live_user):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    folder = live_user.dataset_root / "fast"
    folder.mkdir(parents=True)
    for n, caption in enumerate(["mychar, 1girl, smile", "mychar, 1girl", "mychar"]):
        Image.new("RGB", (64, 64), (n * 80, 30, 30)).save(folder / f"p{n}.png")
        (folder / f"p{n}.txt").write_text(caption)
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    page.locator(".ds-cell a.ds-thumb").nth(2).click()  # p2: "mychar", no 1girl yet
    expect(page.locator("#caption-text")).to_have_value("mychar")

    page.keyboard.press("Alt+t")
    # No waiting between the keys: the three land before the suggestions' request has answered.
    page.keyboard.type("1gi")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#caption-text")).to_have_value("mychar, 1girl")
    assert (folder / "p2.txt").read_text() == "mychar, 1girl"

    # Nothing to suggest: ↓ finds no list, and Enter adds what was typed.
    page.keyboard.press("Alt+t")
    page.keyboard.type("zqx tag")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#caption-text")).to_have_value(re.compile(r"^mychar, 1girl, zqx tag$"))
    assert faults == []
