"""Retake the README's screenshots (and look at the product as a user does) at 1280×800.

Runs `tessera up` against the fake Replicate in a temporary data folder, makes images through the
Generate form, opens a dataset and a canvas, and saves PNGs of the pages. The fake paints each output
as a small procedural landscape instead of its usual flat colour, so the pictures read as pictures;
everything else (pages, jobs, files) is the real product.

    python bench/readme_screenshots.py                 # writes static/img/screenshot-*.png
    python bench/readme_screenshots.py --out /tmp/look --all   # also generate, detail and jobs pages
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.app_helpers import TEST_PASSWORD  # noqa: E402
from tests.fake_replicate import FakeReplicate, _output_size, fill_colour, png_bytes  # noqa: E402
from tests.live import free_port, wait_until_healthy  # noqa: E402

PROMPTS = [
    ("a lighthouse on a cliff at dusk, volumetric light", "1:1"),
    ("misty pine forest at dawn, soft light", "16:9"),
    ("a desert road under a huge orange sun", "2:3"),
    ("alpine lake, snowy peaks, golden hour", "21:9"),
    ("a quiet harbour at night, lanterns", "4:5"),
    ("rolling green hills after rain", "3:2"),
]


def landscape(size: tuple[int, int], seed: int, index: int) -> Image.Image:
    """Sky gradient, a sun and three layers of hills, coloured from the prediction's seed."""
    width, height = size
    rng = np.random.default_rng(seed * 31 + index)
    base = np.array(fill_colour(seed, index), dtype=float)
    top, bottom = base * 0.35, np.clip(base * 0.8 + 90, 0, 255)
    ramp = np.linspace(0, 1, height)[:, None, None]
    sky = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    image = Image.fromarray(sky)
    draw = ImageDraw.Draw(image)
    sun_x, sun_y, radius = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.45) * height, 0.08 * min(size)
    draw.ellipse([sun_x - radius, sun_y - radius, sun_x + radius, sun_y + radius], fill=(255, 236, 200))
    image = image.filter(ImageFilter.GaussianBlur(radius / 6))
    draw = ImageDraw.Draw(image)
    xs = np.linspace(0, 1, 64)
    for layer in range(3):
        level = 0.55 + 0.13 * layer
        phase, freq = rng.uniform(0, 6.28), rng.uniform(2, 5)
        ys = level + 0.06 * np.sin(xs * freq * 3.14 + phase) + 0.03 * np.sin(xs * freq * 7 + phase * 2)
        shade = tuple(int(c) for c in np.clip(base * (0.5 - 0.15 * layer) + 10, 0, 255))
        points = [(x * width, y * height) for x, y in zip(xs, ys)] + [(width, height), (0, height)]
        draw.polygon(points, fill=shade)
    return image


class PictureReplicate(FakeReplicate):
    """The fake Replicate, painting landscapes instead of flat colours for text-to-image outputs."""

    def _run_model(self, prediction_id, model_input, run):
        if run.output_mode not in ("list", "single") or model_input.get("image") or model_input.get("mask"):
            return super()._run_model(prediction_id, model_input, run)
        count = 1 if run.output_mode == "single" else int(model_input.get("num_outputs") or 1)
        urls = [self.publish(f"{prediction_id}-{i}.png", png_bytes(landscape(_output_size(model_input), run.seed, i)),
                             "image/png") for i in range(count)]
        return urls[0] if run.output_mode == "single" else urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "static" / "img")
    parser.add_argument("--all", action="store_true", help="also shoot generate, detail and jobs pages")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, PictureReplicate() as fake:
        data = Path(tmp) / "data"
        env = {**os.environ, "TESSERA_DATA_DIR": str(data), "REPLICATE_API_TOKEN": fake.token,
               "REPLICATE_API_BASE": fake.base_url, "TESSERA_DOWNLOAD_HOSTS": "127.0.0.1",
               "TESSERA_ALLOW_HTTP_DOWNLOADS": "1"}
        for key in ("REDIS_URL", "DATABASE_URL", "SECRET_KEY"):
            env.pop(key, None)
        subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "ada"], input=TEST_PASSWORD + "\n",
                       text=True, env=env, check=True, capture_output=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "2",
                                   "--web-workers", "2"], env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, server)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                     args=["--headless", "--no-sandbox", "--disable-gpu"])
                page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
                page.set_default_timeout(60_000)
                shoot(page, base, data, args.out, args.all)
                browser.close()
        finally:
            server.send_signal(2)
            server.wait(30)


def shoot(page, base: str, data: Path, out: Path, everything: bool) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    for round_ in range(2):  # two rounds: a gallery fuller than one screen
        for prompt, ratio in PROMPTS:
            page.get_by_label("Prompt", exact=True).fill(prompt)
            page.get_by_label("Aspect Ratio", exact=True).select_option(ratio)
            page.get_by_label("Num Outputs", exact=True).fill("2")
            with page.expect_response(lambda r: r.url.endswith("/generate") and r.request.method == "POST"):
                page.get_by_label("Prompt", exact=True).press("Control+Enter")
    page.locator(".job .status.succeeded").nth(2 * len(PROMPTS) - 1).wait_for(timeout=240_000)
    # One more, caught mid-way for the progress line.
    page.goto(f"{base}/")
    page.get_by_label("Prompt", exact=True).fill("a lighthouse on a cliff at dusk, volumetric light")
    page.get_by_label("Num Outputs", exact=True).fill("4")
    page.get_by_role("button", name="Generate").click()
    page.locator(".job .job-line", has_text="Step").first.wait_for()
    if everything:
        page.screenshot(path=out / "look-generate.png")
    page.locator(".job .status.succeeded").first.wait_for()
    page.goto(f"{base}/gallery")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=out / "screenshot-gallery.png")
    page.locator(".gallery-grid a.thumb").nth(2).click()
    page.wait_for_load_state("networkidle")
    if everything:
        page.screenshot(path=out / "look-detail.png")
        page.goto(f"{base}/jobs/")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=out / "look-jobs.png")

    # The canvas: a gallery image opened on a new canvas.
    page.goto(f"{base}/gallery")
    page.locator(".gallery-grid a.thumb").first.click()
    page.get_by_role("button", name="Open", exact=True).click()
    page.wait_for_url("**/canvas/*")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=out / "screenshot-canvas.png")

    # The dataset editor: a folder of gallery images with captions.
    folder = data / "datasets" / "ada" / "landscapes"  # the default per-user dataset root
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(sorted((data / "outputs").rglob("*.png"))[:8]):
        Image.open(image).convert("RGB").save(folder / f"scene_{index:02d}.png")
        (folder / f"scene_{index:02d}.txt").write_text(
            "lndscp, landscape, " + ["sunset, hills", "forest, mist", "desert, sun", "lake, mountains"][index % 4])
    page.goto(f"{base}/datasets/")
    page.get_by_label("Folder", exact=True).fill(str(folder))
    page.get_by_role("button", name="Open folder").click()
    page.locator(".job .status", has_text="succeeded").first.wait_for()
    page.get_by_role("link", name="Show the images").first.click()
    page.locator(".ds-cell a.ds-thumb").first.click()
    page.wait_for_url("**/images/*")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=out / "screenshot-datasets.png")


if __name__ == "__main__":
    main()
