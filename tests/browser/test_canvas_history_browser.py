"""The canvas's one history and kept variations in the browser, as a painter uses them: strokes undone
after a reload, a new stroke ending the redo branch, two tabs on one canvas, variations kept after an
accept (saved to the gallery, accepted instead), and the unknown overlay over a soft-edged cut-out."""
import numpy as np

from tests.canvas_browser_helpers import import_picture, mask_alpha, new_canvas, next_frame, stroke


def open_canvas(page, url):
    page.goto(url)
    page.wait_for_function("() => document.getElementById('canvas-mask').width === 512")
    page.get_by_role("button", name="Show frame").click()
    next_frame(page)


def kept_mask_reaches(page, base, y):
    """Wait until the mask kept on the server reaches down to frame row `y` (strokes are pushed in the
    background, one after another)."""
    page.wait_for_function("""async ([url, y]) => {
        const data = await (await fetch(url)).json();
        return data.mask !== null && data.mask.y + data.mask.height > y;
    }""", arg=[f"{base}/mask", y])


def console_errors(page, errors=None):
    errors = [] if errors is None else errors
    page.on("console", lambda message: errors.append(message.text) if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_two_strokes_reload_then_ctrl_z_takes_back_exactly_the_second(logged_in, live_server, tmp_path):
    page = logged_in
    errors = console_errors(page)
    base = new_canvas(page, live_server, "Reloaded history")
    import_picture(page, tmp_path, np.full((512, 512, 3), (40, 90, 160), np.uint8))
    page.get_by_text("Imported picture.png").wait_for()
    revision = page.locator("#status-revision").inner_text()
    stroke(page, 150)
    stroke(page, 350)
    painted = mask_alpha(page)
    kept_mask_reaches(page, base, 350)

    open_canvas(page, base)  # a reload: nothing of the page's own memory is left
    page.wait_for_function("""() => document.getElementById('canvas-mask').getContext('2d')
        .getImageData(250, 350, 1, 1).data[3] === 255""")
    assert np.array_equal(mask_alpha(page) > 0, painted > 0)
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: brush stroke").wait_for()
    after = mask_alpha(page)
    assert np.array_equal(after[:250] > 0, painted[:250] > 0)  # the first stroke is still there
    assert not after[250:].any()  # the second one, and only it, is gone
    assert page.locator("#status-revision").inner_text() == revision  # the canvas was not touched
    # The next undo takes the first stroke, the one after it the import: one history, newest first.
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: brush stroke").wait_for()
    page.wait_for_function("() => !document.getElementById('canvas-mask').getContext('2d')"
                           ".getImageData(0, 0, 512, 512).data.some((v, i) => i % 4 === 3 && v)")
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: import of picture.png").wait_for()
    # Redo brings the import back; a new stroke then ends the redo branch, here and on the server.
    page.keyboard.press("Control+Shift+z")
    page.locator("#status-message", has_text="Redid: import of picture.png").wait_for()
    stroke(page, 450)
    redo = page.get_by_role("button", name="Redo")
    assert redo.is_disabled()
    page.wait_for_function("""async (url) => {
        const data = await (await fetch(url)).json();
        return !data.history.can_redo && data.history.undo === "brush stroke";
    }""", arg=f"{base}/history")
    assert errors == []


def test_two_tabs_on_one_canvas_one_wins_the_other_is_told_nothing_is_lost(browser, logged_in, live_server):
    first = logged_in
    base = new_canvas(first, live_server, "Two tabs")
    second = first.context.new_page()
    errors = console_errors(second, console_errors(first))
    second.set_default_timeout(20_000)
    open_canvas(second, base)

    stroke(first, 100)
    kept_mask_reaches(first, base, 100)
    # The second tab had not seen that stroke: its own is refused, then added on top, and it is told.
    second.locator("#canvas-viewport").focus()
    stroke(second, 300)
    second.locator("#status-message", has_text="Another tab changed this canvas's history").wait_for()
    kept_mask_reaches(second, base, 300)
    both = mask_alpha(second)
    assert (both[100, 250], both[300, 250]) == (255, 255)  # nothing lost
    open_canvas(first, base)
    assert np.array_equal(mask_alpha(first) > 0, both > 0)
    # Undo in the first tab (now current) takes the second tab's stroke, the newest step.
    first.locator("#canvas-viewport").focus()
    first.keyboard.press("Control+z")
    first.locator("#status-message", has_text="Undid: brush stroke").wait_for()
    first.wait_for_function("() => document.getElementById('canvas-mask').getContext('2d')"
                            ".getImageData(250, 300, 1, 1).data[3] === 0")
    assert mask_alpha(first)[100, 250] == 255
    # The second tab is told on its next step, not obeyed blindly: its undo is refused and it catches up.
    second.keyboard.press("Control+z")
    second.locator("#status-message", has_text="Another tab changed").wait_for()
    second.wait_for_function("() => document.getElementById('canvas-mask').getContext('2d')"
                             ".getImageData(250, 300, 1, 1).data[3] === 0")
    assert mask_alpha(second)[100, 250] == 255
    assert errors == []


def test_variations_stay_after_an_accept_to_save_or_accept_instead(logged_in, live_server, fake_replicate, tmp_path):
    page = logged_in
    errors = console_errors(page)
    base = new_canvas(page, live_server, "Kept variations")
    # A soft-edged cut-out: opaque on the left, a ramp of half-transparent pixels, then nothing.
    picture = np.zeros((512, 512, 4), np.uint8)
    picture[..., :3] = np.random.default_rng(3).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    picture[:, :300, 3] = 255
    picture[:, 300:380, 3] = np.linspace(254, 1, 80).astype(np.uint8)
    import_picture(page, tmp_path, picture)
    page.get_by_text("Imported picture.png").wait_for()
    # The striped overlay covers what an outpaint repaints: the half-transparent ramp too.
    page.wait_for_function("() => document.getElementById('canvas-unknown').width === 512")
    unknown = page.evaluate("""() => {
        const data = document.getElementById('canvas-unknown').getContext('2d').getImageData(0, 0, 512, 512).data;
        const a = (x) => Math.max(...Array.from({length: 512}, (_, y) => data[(y * 512 + x) * 4 + 3]));
        return [a(150), a(299), a(301), a(340), a(379), a(450)];
    }""")
    assert unknown[0] == 0 and unknown[1] == 0 and min(unknown[2:]) > 0

    stroke(page, 200, 50, 250)
    page.get_by_label("Prompt", exact=True).fill("a lighthouse")
    page.get_by_label("Num Outputs", exact=True).fill("3")
    page.get_by_label("Seed", exact=True).fill("9")
    page.get_by_role("button", name="Generate", exact=True).click()
    strip = page.get_by_role("group", name="Staged variations")
    strip.get_by_text("Variation 1 of 3").wait_for(timeout=60_000)
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    strip.get_by_text("Kept variations: 1 accepted, 2 set aside.").wait_for()
    revision = page.locator("#status-revision").inner_text()

    page.reload()  # they survive a reload
    strip.get_by_text("Kept variations: 1 accepted, 2 set aside.").wait_for()
    strip.get_by_role("button", name="Review").click()
    details = []
    for _ in range(3):
        details.append(strip.locator("[data-staging-count]").inner_text())
        page.keyboard.press("ArrowRight")
    assert sorted(details) == ["Variation 1 of 3 · set aside", "Variation 2 of 3 · accepted",
                               "Variation 3 of 3 · set aside"]
    while strip.locator("[data-staging-count]").inner_text() != "Variation 3 of 3 · set aside":
        page.keyboard.press("ArrowRight")
    strip.get_by_role("button", name="Save to gallery").click()
    strip.get_by_text("Saved to the gallery").wait_for()
    gallery = page.request.get(f"{live_server}/gallery").text()
    assert "a lighthouse" in gallery  # a Generation row, in the gallery

    strip.get_by_role("button", name="Accept instead").click()
    page.locator("#status-message", has_text="Accepted variation 3 instead.").wait_for()
    strip.get_by_text("Kept variations: 1 accepted, 2 set aside.").wait_for()
    # One step replaced another: the revision moved on by one, and undo takes back the accept of #3.
    assert page.locator("#status-revision").inner_text() != revision
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: accept of variation 3").wait_for()
    strip.locator("[data-staging-count]", has_text="of 3").wait_for()
    assert "set aside" not in strip.inner_text()  # all three staged again
    page.keyboard.press("Escape")  # discards the one shown: the others stay
    page.wait_for_function("async (url) => (await (await fetch(url)).json()).variations.length === 2",
                           arg=f"{base}/staging")
    assert errors == []
