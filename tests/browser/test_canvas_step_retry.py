"""A mask step whose push fails (the server answers 503, the connection drops, or the server took it
but its answer was lost) is sent again in its place on the queue, never twice: afterwards the mask
the server keeps is the page's mask, and undo takes back each stroke exactly once."""
import io
import time
from urllib.parse import urljoin

import numpy as np
from PIL import Image

from tests.canvas_browser_helpers import mask_alpha, new_canvas, stroke


class FailingPushes:
    """Answers the canvas's mask step pushes: each of `plan` in turn ("503", "drop": no answer at all,
    "lost": the server gets it, the page sees a 502), then lets them through. Counts what was sent."""

    def __init__(self, page, plan):
        self.plan, self.sent = list(plan), []
        page.route("**/history/mask", self.handle)

    def handle(self, route):
        self.sent.append(route.request.post_data_buffer)
        how = self.plan.pop(0) if self.plan else "pass"
        if how == "503":
            route.fulfill(status=503, content_type="text/html", body="<h1>Service Unavailable</h1>")
        elif how == "drop":
            route.abort("connectionreset")
        elif how == "lost":
            route.fetch()  # the server takes the step
            route.fulfill(status=502, content_type="text/html", body="<h1>Bad Gateway</h1>")
        else:
            route.continue_()


def kept_mask(page, base) -> np.ndarray:
    """The mask the server keeps, over the page's 512² frame: (512, 512) alpha."""
    state = page.request.get(f"{base}/mask").json()["mask"]
    frame_x, frame_y = (int(page.locator(f"#frame-{axis}").input_value()) for axis in "xy")
    alpha = np.zeros((512 + 2 * 4096, 512 + 2 * 4096), np.uint8)  # room for a mask beyond the frame
    if state is not None:
        image = np.asarray(Image.open(io.BytesIO(page.request.get(urljoin(base, state["url"])).body())).convert("L"))
        top, left = 4096 + state["y"] - frame_y, 4096 + state["x"] - frame_x
        alpha[top:top + image.shape[0], left:left + image.shape[1]] = image
    return alpha[4096:4096 + 512, 4096:4096 + 512]


def server_matches_page(page, base, timeout=20) -> bool:
    """Whether the kept mask comes to match the page's (pushes go on in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        if np.array_equal(kept_mask(page, base) > 0, mask_alpha(page) > 0):
            return True
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(200)


def test_failed_pushes_are_retried_in_order_and_never_taken_twice(logged_in, live_server):
    page = logged_in
    base = new_canvas(page, live_server, "Flaky connection")
    pushes = FailingPushes(page, ["503", "drop", "lost", "503"])
    stroke(page, 120)
    stroke(page, 300)
    # Both strokes reach the server in the end, the page saying so.
    page.locator("#status-message", has_text="reached the server").wait_for(timeout=30_000)
    page.wait_for_function("() => !document.getElementById('status-message').textContent.includes('trying again')")
    painted = mask_alpha(page)
    assert painted[120].any() and painted[300].any()
    assert server_matches_page(page, base)
    assert len(pushes.sent) == 6  # four failed sends, then each step once

    # One step each: the "lost" push the server took is not a second step. Undo both, then nothing.
    page.locator("#canvas-viewport").focus()
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Undid: brush stroke").wait_for()
    after_one = mask_alpha(page)
    assert after_one[120].any() and not after_one[300].any()
    page.keyboard.press("Control+z")
    page.wait_for_function("() => !document.getElementById('canvas-mask').getContext('2d')"
                           ".getImageData(0, 0, 512, 512).data.some((v, i) => i % 4 === 3 && v)")
    page.keyboard.press("Control+z")
    page.locator("#status-message", has_text="Nothing to undo").wait_for()
    assert not kept_mask(page, base).any()


def test_a_push_that_never_gets_through_is_reported_and_the_mask_catches_up_later(logged_in, live_server):
    page = logged_in
    base = new_canvas(page, live_server, "Server down")
    # The page's retry delays (a minute in all), shortened: seven retries after the first try.
    page.evaluate("() => { document.getElementById('canvas-app').dataset.pushRetryMs = '50 50 50 50 50 50 50'; }")
    pushes = FailingPushes(page, ["503"] * 8)  # the first try and every retry
    stroke(page, 120)
    page.locator("#status-message", has_text="could not be saved after 8 tries").wait_for()
    assert len(pushes.sent) == 8
    assert not kept_mask(page, base).any()
    stroke(page, 300)  # the server answers again: this step, then the whole mask with the lost one
    assert server_matches_page(page, base)
    assert mask_alpha(page)[120].any()
