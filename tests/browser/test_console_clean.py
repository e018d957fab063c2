"""Every page, logged out and logged in, loads with a clean console: no errors, no CSP violations,
no failed requests (the favicon included), also after the HTMX swaps a user makes on it."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from tests.gallery_helpers import generate_through_the_form

# Chromium reports a CSP violation both as a console error and as this event; the event also
# catches violations from swapped content that never reach the console in some builds.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__violations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sample || ''})`));
"""


class ConsoleWatch:
    """Everything that went wrong in the page's console, per page visited."""

    def __init__(self, page, base_url: str):
        self.page, self.base_url, self.problems = page, base_url, []
        page.add_init_script(RECORD_VIOLATIONS)
        page.on("console", lambda m: m.type == "error" and self._add(f"console: {m.text}"))
        page.on("pageerror", lambda e: self._add(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self._own(r.url) and "ERR_ABORTED" not in (r.failure or "")
                and self._add(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: self._own(r.url) and r.status >= 400
                and self._add(f"HTTP {r.status}: {r.request.method} {r.url}"))

    def _own(self, url: str) -> bool:
        return url.startswith(self.base_url)

    def _add(self, text: str) -> None:
        self.problems.append(f"{urlsplit(self.page.url).path}: {text}")

    def visit(self, path: str) -> None:
        self.page.goto(self.base_url + path)
        self.settle()

    def settle(self) -> None:
        self.page.wait_for_load_state("networkidle")
        for violation in self.page.evaluate("window.__violations || []"):
            self._add(f"CSP: {violation}")
        self.page.evaluate("window.__violations = []")


def test_logged_out_pages_are_clean(page, live_server):
    watch = ConsoleWatch(page, live_server)
    for path in ("/login", "/", "/gallery", "/jobs/"):
        watch.visit(path)
        assert urlsplit(page.url).path == "/login"
    favicon = page.request.get(f"{live_server}/favicon.ico", max_redirects=0)
    assert favicon.status == 200 and favicon.headers["content-type"] in ("image/vnd.microsoft.icon", "image/x-icon")
    # The page names its icon, so browsers need not guess /favicon.ico.
    assert page.locator("link[rel=icon]").count() >= 1
    assert watch.problems == []


def test_every_page_is_clean_after_login(logged_in, live_server, app_env, fake_replicate):
    page = logged_in
    watch = ConsoleWatch(page, live_server)

    # Generate: switching the model swaps the form; a generation polls and swaps its status.
    watch.visit("/")
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-dev")
    page.get_by_label("Guidance", exact=True).wait_for()
    fake_replicate.polls_per_state = 3
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("button", name="Generate").click()
    # Scripts leave an empty style attribute on elements they styled through the CSSOM (canvas.js
    # does); htmx must not copy it when it settles the next swap of that element (CSP forbids it).
    page.locator(".job").first.evaluate("job => { job.style.color = 'red'; job.style.color = ''; }")
    page.locator(".job .status.succeeded").first.wait_for(timeout=30_000)
    watch.settle()
    watch.visit("/")
    generate_through_the_form(page, "a lighthouse at dawn")
    watch.settle()

    watch.visit("/gallery")
    page.locator(".thumbs a.thumb").first.click()
    page.wait_for_url("**/gallery/*")
    watch.settle()
    watch.visit("/gallery?q=lighthouse")
    watch.visit("/jobs/")
    page.get_by_label("State").select_option("succeeded")
    watch.settle()

    watch.visit("/canvas/")
    page.get_by_role("button", name="New canvas").click()
    page.wait_for_url("**/canvas/*")
    watch.settle()
    watch.visit("/canvas/")

    folder = Path(app_env["TESSERA_DATA_DIR"]) / "datasets" / "ada" / "console"  # ada's own dataset root
    folder.mkdir(parents=True)
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (96, 64), colour).save(folder / name)
        (folder / name).with_suffix(".txt").write_text("tok, long hair")
    watch.visit("/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    watch.settle()
    dataset_path = urlsplit(page.url).path.rstrip("/")
    watch.visit(dataset_path)
    page.locator(".ds-cell a.ds-thumb").first.click()
    page.wait_for_url("**/images/*")
    watch.settle()
    for sub in ("health", "history", "autocaption", "export", "trash", "trash?confirm=1", "crop-buckets"):
        watch.visit(f"{dataset_path}/{sub}")

    # Whatever else the main navigation offers (LoRAs, when that area exists).
    nav = page.locator("nav[aria-label=Main] a")
    for href in [nav.nth(i).get_attribute("href") for i in range(nav.count())]:
        watch.visit(href)

    assert watch.problems == []
