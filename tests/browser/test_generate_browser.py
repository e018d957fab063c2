"""A user generates an image through the page and sees it appear."""


def test_generate_through_the_ui(logged_in, live_server, fake_replicate):
    page = logged_in
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    # Switching the model re-renders the form from the new schema and keeps the prompt.
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-dev")
    page.get_by_label("Guidance", exact=True).wait_for()
    assert page.get_by_label("Prompt", exact=True).input_value() == "a lighthouse at dusk"
    page.get_by_label("Num Outputs", exact=True).fill("2")
    page.get_by_role("button", name="Generate").click()
    page.locator(".job .status", has_text="running").or_(page.locator(".job .status", has_text="succeeded")).first.wait_for()
    images = page.locator(".results img")
    images.nth(1).wait_for(timeout=30_000)
    assert images.count() == 2
    assert page.evaluate("() => [...document.querySelectorAll('.results img')].every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator(".job progress").count() == 0  # the status partial stopped polling and dropped its bar
    create = [r for r in fake_replicate.requests if r.method == "POST" and r.path.endswith("/predictions")]
    assert create[0].json["input"]["prompt"] == "a lighthouse at dusk"


def test_invalid_value_is_shown_by_the_field(logged_in):
    page = logged_in
    # Picking a model swaps in a new form: wait for it, or it replaces what is typed below (under load).
    page.evaluate("() => { document.getElementById('generate-form').dataset.replaced = 'no'; }")
    page.get_by_label("Model", exact=True).select_option("black-forest-labs/flux-schnell")
    page.locator("#generate-form:not([data-replaced])").wait_for()
    page.get_by_label("Prompt", exact=True).fill("x")
    # Bypass the browser's own min/max check to see the server's message by the field.
    page.evaluate("() => document.getElementById('in-num_outputs').removeAttribute('max')")
    page.get_by_label("Num Outputs", exact=True).fill("7")
    page.get_by_role("button", name="Generate").click()
    error = page.locator("#in-num_outputs-error")
    error.wait_for()
    assert "4" in error.inner_text()
    assert page.locator(".job").count() == 0
