"""A new user uploads a zip with nested folders and macOS junk: the grid and the tag list fill
themselves when the scan the unpack started ends, with no reload (the unpack's end follows the scan)."""
import io
import re
import zipfile

from PIL import Image
from playwright.sync_api import expect


def zip_with_junk(path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for n, folder in enumerate(["set/a", "set/b/c"]):
            data = io.BytesIO()
            Image.new("RGB", (96, 64), (n * 120, 60, 60)).save(data, "PNG")
            archive.writestr(f"{folder}/photo {n}.png", data.getvalue())
            archive.writestr(f"{folder}/photo {n}.txt", f"tok, nested{n}")
            archive.writestr(f"__MACOSX/{folder}/._photo {n}.png", b"\x00\x05\x16\x07junk")
        archive.writestr("set/.DS_Store", b"junk")


def test_an_uploaded_zip_fills_the_grid_when_its_scan_ends(logged_in, live_server, tmp_path):
    page = logged_in
    faults = []
    page.on("console", lambda m: m.type == "error" and faults.append(m.text))
    zip_with_junk(tmp_path / "my set.zip")
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Zip of images and captions").set_input_files(str(tmp_path / "my set.zip"))
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r"/datasets/\d+$"))
    url = page.url
    # No reload: the unpack's card follows its scan, whose end fills the grid and the tag list.
    expect(page.locator(".ds-cell")).to_have_count(2, timeout=60_000)
    expect(page.locator(".ds-cell").first).to_contain_text("set/a/photo 0.png")
    expect(page.locator("#tag-list")).to_contain_text("nested1")
    assert page.url == url
    expect(page.get_by_text("._photo")).to_have_count(0)
    assert faults == []
