"""The canvas as painters use it: Ctrl+Z takes back the stroke, the mask survives a reload and can be
hidden, an undone accept stages the variations again, Generate is always in reach, imports fit the frame."""
import numpy as np

from tests.canvas_browser_helpers import import_picture, mask_alpha, new_canvas, stroke


def test_ctrl_z_takes_back_one_stroke_and_the_mask_survives_a_reload(logged_in, live_server, tmp_path):
    page = logged_in
    base = new_canvas(page, live_server, "Habits")
    picture = np.full((512, 512, 3), (40, 90, 160), np.uint8)
    import_picture(page, tmp_path, picture)
    page.get_by_text("Imported picture.png").wait_for()
    revision = page.locator("#status-revision").inner_text()
    head = page.request.get(f"{base}/bounds").json()["head"]

    stroke(page, 150)
    stroke(page, 350)
    painted = mask_alpha(page)
    assert painted[150, 250] == 255 and painted[350, 250] == 255 and painted[250, 250] == 0

    page.locator("#canvas-viewport").focus()
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: brush stroke").wait_for()
    after = mask_alpha(page)
    assert np.array_equal(after[:250], painted[:250])  # the first stroke is still there
    assert not after[250:].any()  # the second one, and only it, is gone
    assert page.locator("#status-revision").inner_text() == revision  # the canvas was not touched
    assert page.request.get(f"{base}/bounds").json()["head"] == head

    page.keyboard.press("Control+Shift+z")
    page.locator("#status-message", has_text="Redid: brush stroke").wait_for()
    assert np.array_equal(mask_alpha(page), painted)

    # H hides the mask, it is not lost; H shows it again.
    page.keyboard.press("h")
    assert page.locator("#canvas-mask").is_hidden()
    assert np.array_equal(mask_alpha(page), painted)
    page.keyboard.press("h")
    assert page.locator("#canvas-mask").is_visible()

    # The mask is kept with the canvas: a reload finds it where it was.
    page.wait_for_function("() => fetch(location.pathname + '/mask').then(r => r.json()).then(d => d.mask !== null)")
    page.wait_for_timeout(600)  # the last save is debounced
    mask_reads = []
    page.on("request", lambda request: mask_reads.append(request.url) if request.url.endswith("/mask") else None)
    page.reload()
    page.wait_for_function("() => document.getElementById('canvas-mask').width === 512")
    page.wait_for_function("""() => {
        const c = document.getElementById('canvas-mask');
        return c.getContext('2d').getImageData(250, 350, 1, 1).data[3] === 255;
    }""")
    assert np.array_equal(mask_alpha(page) > 0, painted > 0)
    # Read once: an htmx swap (the page's own load included) must not clear and redraw it again.
    page.wait_for_timeout(1000)
    assert len(mask_reads) == 1, mask_reads
    assert np.array_equal(mask_alpha(page) > 0, painted > 0)

    # Shift+C clears it, as one more undo step.
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("Shift+C")
    assert not mask_alpha(page).any()
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: clear mask").wait_for()
    assert np.array_equal(mask_alpha(page) > 0, painted > 0)


def test_accept_then_undo_stages_every_variation_again(logged_in, live_server, fake_replicate, tmp_path):
    page = logged_in
    new_canvas(page, live_server, "Accept and undo")
    import_picture(page, tmp_path, np.random.default_rng(3).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    page.get_by_text("Imported picture.png").wait_for()
    stroke(page, 256)

    # Generate stays in view at 1280×800, and Ctrl+Enter sends the request from the prompt box.
    button = page.get_by_role("button", name="Generate", exact=True)
    box = button.bounding_box()
    assert box["y"] + box["height"] <= 800 and box["x"] + box["width"] <= 1280
    page.get_by_label("Prompt", exact=True).fill("a red boat")
    page.get_by_label("Num Outputs", exact=True).fill("3")
    page.get_by_label("Seed", exact=True).fill("77")
    page.get_by_label("Prompt", exact=True).press("Control+Enter")
    strip = page.get_by_role("group", name="Staged variations")
    strip.get_by_text("Variation 1 of 3").wait_for(timeout=60_000)
    assert "seed 77, output 1 of 3" in strip.inner_text()
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("ArrowRight")
    strip.get_by_text("Variation 2 of 3").wait_for()
    page.keyboard.press("Enter")
    page.locator("#status-message", has_text="Accepted variation 2. Ctrl+Z undoes it.").wait_for()
    # The strip folds to one line (painting goes on); the three stay kept until discarded.
    strip.get_by_text("Kept variations: 1 accepted, 2 set aside.").wait_for()
    assert page.locator("#staged-preview").is_hidden()

    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: accept of variation 2").wait_for()
    strip.locator("[data-staging-count]", has_text="of 3").wait_for()
    labels = []
    for _ in range(3):
        labels.append(strip.locator("[data-staging-details]").inner_text())
        page.keyboard.press("ArrowRight")
    assert sorted(label.split("· ")[1] for label in labels) == [
        "seed 77, output 1 of 3", "seed 77, output 2 of 3", "seed 77, output 3 of 3"]


def test_an_import_of_another_shape_asks_and_fits_the_frame(logged_in, live_server, tmp_path):
    page = logged_in
    page.goto(f"{live_server}/canvas/")
    page.get_by_role("button", name="New canvas").click()
    page.wait_for_url(f"{live_server}/canvas/*")
    assert page.get_by_label("Width", exact=True).input_value() == "1024"
    assert page.get_by_label("Height", exact=True).input_value() == "1024"
    import_picture(page, tmp_path, np.full((768, 1024, 3), 200, np.uint8), "wide.png")
    dialog = page.get_by_role("dialog", name="The picture and the frame differ in shape")
    dialog.wait_for()
    assert "1024 × 768" in dialog.inner_text()
    dialog.get_by_role("button", name="Fit the frame to the picture").click()
    page.get_by_text("Imported wide.png").wait_for()
    assert page.get_by_label("Height", exact=True).input_value() == "768"
    base = page.url.rstrip("/")
    assert page.request.get(f"{base}/bounds").json()["box"] == [0, 0, 1024, 768]
    # Nothing in the frame is left empty to be outpainted by surprise.
    assert page.request.get(f"{base}/unknown.png?x=0&y=0&w=1024&h=768").headers["x-canvas-known"] == "all"
