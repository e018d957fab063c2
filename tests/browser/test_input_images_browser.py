"""A user gives a model several input images: uploads two, reorders them, and the model receives a
JSON list of two images in that order; then picks a gallery image for a one-image input."""
from __future__ import annotations

import base64
import io

from PIL import Image

NANO = "google/nano-banana"
KONTEXT = "black-forest-labs/flux-kontext-pro"


def png_file(tmp_path, name, colour):
    path = tmp_path / name
    Image.new("RGB", (40, 30), colour).save(path, "PNG")
    return path


def creates(fake):
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/predictions")]


def colour_of(data_uri: str) -> tuple[int, int, int]:
    header, _, payload = data_uri.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64")
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        return image.convert("RGB").getpixel((0, 0))


def test_two_uploaded_images_reach_the_model_as_a_list_in_the_chosen_order(logged_in, fake_replicate, tmp_path):
    page = logged_in
    messages = []
    page.on("console", lambda message: messages.append(message.text) if message.type in ("error", "warning") else None)
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option(NANO)
    page.get_by_label("Prompt", exact=True).fill("the red one wearing the blue one")
    page.get_by_label("Upload images").set_input_files([png_file(tmp_path, "red.png", (220, 20, 20)),
                                                        png_file(tmp_path, "blue.png", (20, 20, 220))])
    items = page.locator("#in-image_input .file-items > li")
    assert items.count() == 2
    assert page.evaluate("() => [...document.querySelectorAll('#in-image_input .file-items img')]"
                         ".every(i => i.complete && i.naturalWidth === 40)")  # previews of the files themselves
    page.get_by_role("button", name="Move blue.png earlier").click()
    assert items.nth(0).locator(".file-label").inner_text() == "blue.png"
    page.get_by_role("button", name="Generate").click()
    page.locator(".results img").first.wait_for(timeout=30_000)

    [create] = creates(fake_replicate)
    sent = create.json["input"]["image_input"]
    assert isinstance(sent, list) and len(sent) == 2
    assert [colour_of(uri) for uri in sent] == [(20, 20, 220), (220, 20, 20)]
    assert create.json["input"]["prompt"] == "the red one wearing the blue one"
    assert "aspect_ratio" in create.json["input"]  # the model's own default, sent as chosen

    # The image just made goes into a one-image input from the gallery picker.
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option(KONTEXT)
    page.get_by_label("Prompt", exact=True).fill("make it night")
    page.get_by_role("button", name="From gallery or canvas").click()
    dialog = page.locator("dialog.picker[open]")
    dialog.locator(".picker-grid button").first.click()
    assert page.locator("#in-input_image .file-items > li").count() == 1
    page.get_by_role("button", name="Generate").click()
    page.locator(".results img").nth(1).wait_for(timeout=30_000)
    second = creates(fake_replicate)[1].json["input"]
    assert second["input_image"].startswith("data:image/png;base64,")
    assert messages == []


def test_an_untouched_image_list_sends_nothing(logged_in, fake_replicate):
    page = logged_in
    with page.expect_response(lambda r: "/generate/form" in r.url):
        page.get_by_label("Model", exact=True).select_option(NANO)
    page.get_by_label("Prompt", exact=True).fill("a banana")
    page.get_by_role("button", name="Generate").click()
    page.locator(".results img").first.wait_for(timeout=30_000)
    [create] = creates(fake_replicate)
    assert "image_input" not in create.json["input"]
