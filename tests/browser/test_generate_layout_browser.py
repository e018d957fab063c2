"""Generate at 1280×800: the button and the progress in view without scrolling; Ctrl+Enter submits
from any field; progress reads as one line with a clock."""
import re

VIEWPORT_HEIGHT = 800


def in_view(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT_HEIGHT


def test_button_in_view_and_ctrl_enter_from_any_field(logged_in, live_server, fake_replicate):
    page = logged_in
    button = page.get_by_role("button", name="Generate")
    assert in_view(button)
    # The model with the most options keeps its button in view too.
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-dev")
    page.get_by_label("Guidance", exact=True).wait_for()
    assert in_view(page.get_by_role("button", name="Generate"))
    assert page.evaluate("scrollY") == 0

    fake_replicate.polls_per_state = 4  # slow enough to see the phases
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_label("Seed", exact=True).fill("1234")
    page.get_by_label("Seed", exact=True).press("Control+Enter")  # from a number field, not the prompt
    job = page.locator(".job").first
    job.wait_for()
    assert in_view(job)  # the progress shows where the user is looking
    lines = set()
    while not job.locator(".status.succeeded").count():
        text = job.locator(".job-line").inner_text() if job.locator(".job-line").count() else ""
        lines.add(" ".join(text.split()))
        page.wait_for_timeout(100)
    for line in lines - {""}:
        assert "%" not in line, line
        assert re.search(r"\d+:\d\d$", line), line  # with its clock
    assert any(re.match(r"Step \d+ of 28 ", line) for line in lines), lines
    assert job.locator(".results img").count() == 1
    assert re.fullmatch(r"Done · 1 image \d+:\d\d", " ".join(job.locator(".job-line").inner_text().split()))
    sent = [r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert len(sent) == 1 and sent[0].json["input"]["seed"] == 1234

    # Ctrl+Enter inside another form (adding a model) does not generate.
    page.locator("summary", has_text="Add a model").click()
    page.get_by_label("Replicate model").fill("owner/name")
    page.get_by_label("Replicate model").press("Control+Enter")
    page.wait_for_timeout(500)
    assert len([r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]) == 1
