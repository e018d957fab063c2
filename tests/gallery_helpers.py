"""Helpers for tests of the gallery and of Generate in the browser."""
from __future__ import annotations


def generate_through_the_form(page, prompt: str, *, outputs: int = 1, aspect_ratio: str | None = None,
                              shortcut: bool = False) -> None:
    """Fill Generate's form (FLUX.1 [schnell]) on the open page, submit it and wait until the job's
    images are shown. ``shortcut`` submits with Ctrl+Enter from the prompt instead of the button."""
    page.get_by_label("Prompt", exact=True).fill(prompt)
    if outputs != 1:
        page.get_by_label("Num Outputs", exact=True).fill(str(outputs))
    if aspect_ratio:
        page.get_by_label("Aspect Ratio", exact=True).select_option(aspect_ratio)
    done_before = page.locator(".job .status.succeeded").count()
    if shortcut:
        page.get_by_label("Prompt", exact=True).press("Control+Enter")
    else:
        page.get_by_role("button", name="Generate").click()
    page.locator(".job .status.succeeded").nth(done_before).wait_for(timeout=30_000)
    page.locator(".job").first.locator(".results img").nth(outputs - 1).wait_for()
