"""Browser tests: Playwright driving Debian's Chromium against a real `tessera up`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app_helpers import TEST_PASSWORD
from tests.live import free_port, wait_until_healthy

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = "Debian's Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("TESSERA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Browser tests are required here, but {reason}.")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def live_server(app_env):
    """`tessera up` on a free port with one worker, and an account `ada`; yields its base URL."""
    env = {**os.environ, **app_env}
    subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "ada"], input=TEST_PASSWORD + "\n",
                   text=True, env=env, check=True, capture_output=True)
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "1",
                                "--web-workers", "1"], env=env, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    wait_until_healthy(base_url, process)
    yield base_url
    process.send_signal(2)  # Ctrl+C
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture
def logged_in(page, live_server):
    page.goto(f"{live_server}/login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server}/")
    return page
