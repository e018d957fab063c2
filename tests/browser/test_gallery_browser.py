"""The gallery as a user browses it at 1280×800: a dense grid of thumbnails that keep their aspect
ratio, a detail view per image with its settings and actions, search, model filter and ←/→."""
from __future__ import annotations

from tests.gallery_helpers import generate_through_the_form

VIEWPORT = {"width": 1280, "height": 800}

# Every <img> in the grid: its rendered box, its natural size and its cell's box.
MEASURE = """sel => [...document.querySelectorAll(sel)].map(img => {
  const box = img.getBoundingClientRect(), cell = (img.closest('.thumb') || img).getBoundingClientRect();
  return {w: box.width, h: box.height, top: box.top, bottom: box.bottom, left: box.left, right: box.right,
          nw: img.naturalWidth, nh: img.naturalHeight, cw: cell.width, ch: cell.height};
})"""


def assert_thumbnails_keep_aspect(page, selector: str, *, max_side: float) -> list[dict]:
    page.wait_for_function("sel => [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)",
                           arg=selector)
    boxes = page.evaluate(MEASURE, selector)
    assert boxes, f"no thumbnails matched {selector}"
    for box in boxes:
        assert abs(box["w"] / box["h"] - box["nw"] / box["nh"]) < 0.03, box  # not stretched
        assert max(box["w"], box["h"]) <= max_side, box  # not drawn at the image's pixel size
        assert box["w"] <= box["cw"] + 0.5 and box["h"] <= box["ch"] + 0.5, box  # inside its cell
        assert max(box["w"], box["h"]) >= 0.9 * min(box["cw"], box["ch"]), box  # and filling it
    return boxes


def test_dense_grids_and_the_detail_view(logged_in, live_server, live_data_dir):
    page = logged_in
    outputs = live_data_dir / "outputs"  # shared with the other tests on this server: count what is new
    earlier = set(outputs.rglob("*.png"))
    # 20 images in five proportions, made through the form (the last one with Ctrl+Enter).
    for ratio in ("1:1", "16:9", "2:3", "21:9"):
        generate_through_the_form(page, f"a lighthouse, {ratio}", outputs=4, aspect_ratio=ratio)
    generate_through_the_form(page, "a red fox in snow", outputs=4, aspect_ratio="9:16", shortcut=True)
    assert_thumbnails_keep_aspect(page, ".results img", max_side=320)

    page.reload()
    assert_thumbnails_keep_aspect(page, ".generate-results .thumbs img", max_side=320)

    page.goto(f"{live_server}/gallery")
    boxes = assert_thumbnails_keep_aspect(page, ".gallery-grid img", max_side=240)
    on_screen = [b for b in boxes if b["top"] >= 0 and b["bottom"] <= VIEWPORT["height"] and b["right"] <= VIEWPORT["width"]]
    assert len(on_screen) >= 15, f"{len(on_screen)} thumbnails fully visible at 1280×800"

    page.goto(f"{live_server}/jobs/")
    page.locator("table.jobs summary", has_text="a red fox in snow").click()
    assert_thumbnails_keep_aspect(page, "table.jobs .results img", max_side=320)

    # Search by prompt text, then the detail view of the newest match.
    page.goto(f"{live_server}/gallery")
    page.get_by_label("Search prompts").fill("fox")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/gallery?q=fox*")
    assert page.locator(".gallery-grid img").count() == 4
    page.locator(".gallery-grid a.thumb").first.click()
    page.wait_for_url("**/gallery/*")
    first = page.url
    large = page.locator(".gallery-large img")
    large.wait_for()
    box = large.bounding_box()
    assert box["y"] + box["height"] <= VIEWPORT["height"] and box["height"] >= 500  # large, and all of it in view
    assert page.locator(".gallery-prompt").first.inner_text() == "a red fox in snow"
    assert "black-forest-labs/flux-schnell" in page.locator("dl.params").first.inner_text()
    assert "9:16" in page.locator("dl.params").first.inner_text()

    # → goes to the next (older) image of the same search, ← comes back; the search is kept.
    def press(key):
        before = page.url
        page.keyboard.press(key)
        page.wait_for_url(lambda url: url != before)
        page.locator(".gallery-large img").wait_for()
        return page.url

    visited = [first] + [press("ArrowRight") for _ in range(3)]
    assert len(set(visited)) == 4 and all("q=fox" in url for url in visited)
    page.keyboard.press("ArrowRight")  # the oldest match: nothing older within the search
    page.wait_for_timeout(500)
    assert page.url == visited[-1]
    assert [press("ArrowLeft") for _ in range(3)] == visited[-2::-1]
    page.keyboard.press("Escape")  # back to the grid, search kept
    page.wait_for_url("**/gallery?q=fox")
    page.go_back()
    page.wait_for_url(first)

    # "Use these settings" fills Generate, model and options included.
    page.get_by_role("link", name="Use these settings").click()
    page.wait_for_url(f"{live_server}/?from=*")
    assert page.get_by_label("Prompt", exact=True).input_value() == "a red fox in snow"
    assert page.get_by_label("Model", exact=True).input_value() == "black-forest-labs/flux-schnell"
    assert page.get_by_label("Aspect Ratio", exact=True).input_value() == "9:16"

    # Delete, after confirming: the row and the file are gone.
    page.go_back()
    page.wait_for_url(first)
    generation_id = int(first.split("/gallery/")[1].split("?")[0])
    files = set(outputs.rglob("*.png")) - earlier
    assert len(files) == 20
    page.get_by_text("Delete…").click()
    page.get_by_role("button", name="Delete the image for good").click()
    page.wait_for_url("**/gallery/*")
    assert page.url != first
    left = set(outputs.rglob("*.png")) - earlier
    assert len(left) == 19 and left < files
    assert page.request.get(f"{live_server}/gallery/{generation_id}").status == 404


def test_filter_by_model(logged_in, live_server):
    page = logged_in
    generate_through_the_form(page, "a schnell image")
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-dev")
    page.get_by_label("Guidance", exact=True).wait_for()
    generate_through_the_form(page, "a dev image")
    page.goto(f"{live_server}/gallery")
    assert page.locator(".gallery-grid img").count() == 2
    page.get_by_label("Model").select_option("black-forest-labs/flux-dev")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**model=*")
    assert [page.locator(".gallery-grid figcaption").all_inner_texts()] == [["a dev image"]]
