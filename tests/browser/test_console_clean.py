"""Every page, logged out and logged in, loads with a clean console: no errors, no CSP violations,
no failed requests (the favicon included), also after the HTMX swaps a user makes on it."""
from __future__ import annotations

from urllib.parse import urlsplit

from PIL import Image
from playwright.sync_api import Error as PlaywrightError, expect

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


def test_every_page_is_clean_after_login(logged_in, live_server, live_user, fake_replicate):
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

    folder = live_user.dataset_root / "console"  # the user's own dataset root
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


class HeldRequests:
    """Requests to `pattern` that the browser sends but that get no answer until `release()`: a poll
    held this way is certainly in flight when the test navigates away."""

    def __init__(self, page, pattern: str):
        self.page, self.pattern, self.routes = page, pattern, []
        page.route(pattern, self._hold)

    def _hold(self, route) -> None:
        self.routes.append(route)

    def wait(self, count: int = 1) -> None:
        for _ in range(200):
            if len(self.routes) >= count:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError(f"no request to {self.pattern} within 10 s")

    def release(self) -> None:
        """Let the held requests through; what the page asks for from now on goes through at once.
        The requests of a page the browser has left were canceled with it: nothing to let through."""
        self.page.unroute(self.pattern)
        for route in self.routes:
            try:
                route.continue_()
            except PlaywrightError as exc:
                assert "already handled" in str(exc), exc


def leave_by_the_menu(page, label: str) -> None:
    page.locator("nav[aria-label=Main]").get_by_role("link", name=label, exact=True).click()
    page.wait_for_load_state()


def make_folder(root, name: str, count: int, caption: str | None) -> str:
    folder = root / name
    folder.mkdir(parents=True)
    for number in range(count):
        Image.new("RGB", (512, 512), (20 * number, 40, 90)).save(folder / f"{name}{number}.png")
        if caption is not None:
            (folder / f"{name}{number}.txt").write_text(f"{caption}, number {number}")
    return str(folder)


def open_folder(page, base_url: str, folder: str) -> str:
    """Open `folder` as a dataset, wait for its scan; returns the dataset page's path."""
    page.goto(f"{base_url}/datasets/")
    page.get_by_label("Folder", exact=True).fill(folder)
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()
    page.wait_for_url("**/datasets/*")
    return urlsplit(page.url).path.rstrip("/")


def test_leaving_a_page_while_its_job_poll_is_in_flight_keeps_the_console_clean(logged_in, live_server, live_user,
                                                                                 fake_replicate):
    """Generate, the jobs page, a canvas, a dataset and a LoRA each poll a running job; the user leaves
    each while a poll is on its way. The browser cancels that request: nothing may reach the console."""
    page = logged_in
    watch = ConsoleWatch(page, live_server)
    # A page polls while the job it shows runs. The one job worker runs one job at a time, so only a
    # job that must still run when the next page is drawn is kept running on the fake Replicate.
    fake_replicate.polls_per_state = 10_000
    try:
        # Generate: the new job's status poll.
        watch.visit("/")
        held = HeldRequests(page, "**/jobs/*/status*")
        page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
        page.get_by_role("button", name="Generate").click()
        held.wait()
        leave_by_the_menu(page, "Jobs")
        watch.settle()
        held.release()

        # The jobs page: its rows poll while that job runs.
        held = HeldRequests(page, "**/jobs/rows*")
        watch.visit("/jobs/")
        held.wait()
        leave_by_the_menu(page, "Canvas")
        watch.settle()
        held.release()
        fake_replicate.polls_per_state = 1

        # A canvas: its generation's status poll.
        page.get_by_role("button", name="New canvas").click()
        page.wait_for_url("**/canvas/*")
        page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-schnell")
        page.locator("#canvas-model-options", has_text="draws from text only").wait_for()
        page.get_by_label("Prompt", exact=True).fill("a harbour")
        held = HeldRequests(page, "**/jobs/*/status*")
        page.get_by_role("button", name="Generate").click()
        held.wait()
        leave_by_the_menu(page, "Datasets")
        watch.settle()
        held.release()

        # A dataset: an auto-caption job's status poll on the dataset's page.
        dataset = open_folder(page, live_server, make_folder(live_user.dataset_root, "bare", 2, None))
        watch.visit(f"{dataset}/autocaption")
        fake_replicate.polls_per_state = 10_000
        page.get_by_role("button", name="Caption 2 images").click()
        page.locator("#caption-jobs .job").first.wait_for()
        held = HeldRequests(page, "**/jobs/*/status*")
        watch.visit(dataset)
        held.wait()
        leave_by_the_menu(page, "LoRAs")
        watch.settle()
        held.release()
        fake_replicate.polls_per_state = 1

        # A LoRA in training: its progress poll.
        open_folder(page, live_server, make_folder(live_user.dataset_root, "ink", 10, "inkstyle"))
        page.get_by_role("link", name="Train a LoRA").click()
        page.get_by_label("Trigger Word", exact=True).fill("inkstyle")
        page.get_by_label("Model name on Replicate").fill("ink-console")
        held = HeldRequests(page, "**/loras/*/progress*")
        page.get_by_role("button", name="Start training").click()
        page.wait_for_url("**/loras/*")
        held.wait()
        leave_by_the_menu(page, "Generate")
        watch.settle()
        held.release()
    finally:
        fake_replicate.polls_per_state = 1  # let every job end before the next test
    assert watch.problems == []


def test_a_newer_check_or_tag_search_waits_for_the_one_in_flight(logged_in, live_server, live_user):
    """The Train page re-checks on every change and the tag panel searches as the user types: a newer
    request waits for the one in flight (and then shows the newest answer) rather than aborting it,
    which htmx would report on the console."""
    page = logged_in
    watch = ConsoleWatch(page, live_server)
    dataset = open_folder(page, live_server, make_folder(live_user.dataset_root, "ink", 10, "inkstyle, tag 01, tag 02, other"))
    watch.settle()

    # The tag panel: "tag" is still on its way when the user has typed "tag 02".
    held = HeldRequests(page, "**/tags?*")
    search = page.get_by_label("Find a tag in the list")
    search.fill("tag")
    held.wait()
    search.fill("tag 02")
    page.wait_for_timeout(600)  # past the 250 ms the search waits for typing to pause
    assert watch.problems == []  # nothing aborted, nothing reported
    assert len(held.routes) == 1  # the newer search waits
    held.release()
    rows = page.locator("#tag-list > li[data-tag]")
    expect(rows).to_have_count(1)  # "tag" answers first (two rows), then the newest search
    assert rows.first.get_attribute("data-tag") == "tag 02"
    watch.settle()

    # The Train page: a change while the check runs.
    watch.visit(dataset)
    page.get_by_role("link", name="Train a LoRA").click()
    page.get_by_role("heading", name="Train a LoRA from all images").wait_for()
    watch.settle()
    held = HeldRequests(page, "**/check")
    steps = page.get_by_label("Steps", exact=True)
    steps.fill("300")
    steps.dispatch_event("change")
    held.wait()
    steps.fill("400")
    steps.dispatch_event("change")
    page.wait_for_timeout(300)
    assert watch.problems == []
    assert len(held.routes) == 1
    held.release()
    page.locator(".lora-facts dd", has_text="400").wait_for()
    watch.settle()
    assert watch.problems == []
