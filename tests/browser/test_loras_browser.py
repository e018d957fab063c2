"""A user trains a LoRA from a dataset, watches it train, and generates with it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from app.replicate.presets import preset_for
from app.replicate.trainers import FLUX_LORA_TRAINER_SCHEMA

LORA_MODEL = "black-forest-labs/flux-dev-lora"
# Set to a folder to keep screenshots of the Train and LoRAs pages (to look at them).
SCREENSHOTS = os.environ.get("TESSERA_SCREENSHOTS")


@pytest.fixture
def quick_polls(fake_replicate):
    """The fake trains in a few looks (the shared live server looks again every second, not every 20 s)."""
    fake_replicate.training_polls = 4
    if preset_for(LORA_MODEL) is None:  # until the presets ship it: flux-dev-lora's inputs on the fake
        schemas = {k: v for k, v in FLUX_LORA_TRAINER_SCHEMA["components"]["schemas"].items()
                   if not k.startswith("Training")}
        properties = {**schemas["Input"]["properties"],
                      "lora_weights": {"type": "string", "title": "Lora Weights", "x-order": 3}}
        schemas["Input"] = {**schemas["Input"], "properties": properties}
        fake_replicate.add_model(LORA_MODEL, {**FLUX_LORA_TRAINER_SCHEMA, "components": {"schemas": schemas}})


def make_dataset(user) -> Path:
    folder = user.dataset_root / "ink"  # the user's own dataset folder
    folder.mkdir(parents=True)
    for number in range(10):
        Image.new("RGB", (512, 512), (20 * number, 40, 90)).save(folder / f"ink{number}.png")
        (folder / f"ink{number}.txt").write_text(f"inkstyle, a drawing of a boat, number {number}")
    return folder


def test_train_watch_and_generate(quick_polls, logged_in, live_server, live_user, fake_replicate):
    page = logged_in
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda response: errors.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    folder = make_dataset(live_user)
    page.goto(f"{live_server}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    page.get_by_role("link", name="Show the images").first.click()

    # The Train page: the trainer's form, the trigger word from the dataset, a clean pre-flight check.
    page.get_by_role("link", name="Train a LoRA").click()
    page.get_by_role("heading", name="Train a LoRA from all images").wait_for()
    page.get_by_label("Trigger Word", exact=True).fill("inkstyle")
    page.get_by_label("Steps", exact=True).fill("200")
    page.get_by_label("Steps", exact=True).press("Tab")  # a change re-runs the check
    page.locator(".lora-facts dd", has_text="200").wait_for()
    page.get_by_text("No problems found in 10 images.").wait_for()
    page.get_by_label("Model name on Replicate").fill("ink-boats")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "lora-train.png"))
    start = page.get_by_role("button", name="Start training")
    box = start.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 800  # the main action is in view at 1280×800
    start.click()

    # Its page shows the training move: steps, loss and the chart, then ready with its weights.
    page.wait_for_url("**/loras/*")
    page.locator("#lora-progress dd", has_text="of 200").wait_for(timeout=60_000)
    assert page.locator("#lora-status-badge").text_content() == "training"  # the name's badge keeps up
    page.locator("#lora-progress .lora-status", has_text="ready").wait_for(timeout=60_000)
    assert page.locator("svg.loss-chart").count() == 1
    page.get_by_role("link", name="ink-boats.safetensors").wait_for()
    [training] = fake_replicate.trainings.values()
    assert training["input"]["steps"] == 200 and training["input"]["trigger_word"] == "inkstyle"
    page.goto(f"{live_server}/loras/")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "lora-list.png"))
    page.get_by_role("link", name="ink-boats").first.click()

    assert errors == [], errors  # the dataset, Train and LoRA pages kept the console clean
    # Generate with it: the picker is filled in; the trigger word is added to the prompt.
    page.get_by_role("link", name="Generate with it").first.click()
    if preset_for(LORA_MODEL) is None:
        page.locator("summary", has_text="Add a model").click()
        page.get_by_label("Replicate model").fill(LORA_MODEL)
        page.get_by_role("button", name="Add model").click()
        page.get_by_label("LoRA", exact=True).select_option(label="ink-boats (inkstyle)")
    page.get_by_label("LoRA", exact=True).wait_for()
    assert page.get_by_label("LoRA", exact=True).locator("option:checked").inner_text().startswith("ink-boats")
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "lora-generate.png"))
    page.get_by_label("LoRA scale").first.fill("0.8")
    page.locator("#in-prompt").fill("a boat at sea")
    page.get_by_role("button", name="Generate").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for(timeout=30_000)
    [prediction] = fake_replicate.requests_to("POST", f"/v1/models/{LORA_MODEL}/predictions")
    assert prediction.json["input"]["lora_weights"].startswith("tessera-tester/ink-boats/")
    assert prediction.json["input"]["lora_scale"] == 0.8
    assert prediction.json["input"]["prompt"] == "inkstyle, a boat at sea"
