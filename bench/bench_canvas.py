"""Canvas figures, each side by side with its baseline:

1. compose + paste-back of a 1024×1024 frame (tiles → frame → model input; accept through a feathered mask)
   against the raw Pillow crop and paste of the same pixels in memory;
2. tile GET latency through `tessera up` against the same file from a plain static file server;
3. peak memory (RSS) of exporting a 100-megapixel canvas as a streamed PNG, against decoding it whole;
4. tiles fetched while panning across a canvas of 10,000 tiles, simulating canvas.js's viewport logic
   (static/js/canvas/tiles.js) against the real tile-listing endpoint.

Peak memory is read from /proc/self/status (VmHWM) in a fresh process: getrusage's ru_maxrss would
include the parent's size, which the kernel carries over into a forked child across exec.

Run: python bench/bench_canvas.py
"""
from __future__ import annotations

import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import create_engine, insert

from common import ROOT, free_port, logged_in_client, median_ms, p95_ms, print_table, running_tessera

from app.canvas import pipeline  # noqa: E402
from app.canvas.compose import paste_mask  # noqa: E402
from app.canvas.pngstream import export_png  # noqa: E402
from app.canvas.tiles import (  # noqa: E402
    TileStore, canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile)
from app.metadata import metadata  # noqa: E402

TABLES = [canvas_history_head, canvas_revision, canvas_revision_tile, canvas_tile]
RUNS = 5
TILE_GETS = 300
EXPORT_SIDE = 10_000  # 100 megapixels
EXPORT_TARGET_MB = 500
PAN_GRID = 100  # 100 × 100 = 10,000 tiles
# The canvas viewport at 1280×800 (the page minus the side panel, toolbar and status line).
VIEWPORT = (950, 655)
LIST_MARGIN, PRELOAD = 1, 128  # as static/js/canvas/tiles.js


def photo_like(width: int, height: int, seed: int = 0, x0: int = 0, y0: int = 0) -> np.ndarray:
    """Opaque RGBA with smooth gradients and mild grain: compresses like a photograph, not like noise."""
    ys, xs = np.mgrid[y0:y0 + height, x0:x0 + width].astype(np.float32)
    grain = np.random.default_rng(seed).integers(0, 12, (height, width), dtype=np.uint8)
    pixels = np.empty((height, width, 4), np.uint8)
    pixels[..., 0] = (127 + 100 * np.sin(xs / 310)).astype(np.uint8) + grain
    pixels[..., 1] = (127 + 100 * np.cos(ys / 270)).astype(np.uint8) + grain
    pixels[..., 2] = ((xs + ys) / 40 % 200).astype(np.uint8) + grain
    pixels[..., 3] = 255
    return pixels


def new_store(folder: Path) -> TileStore:
    engine = create_engine(f"sqlite:///{folder}/bench.db")
    metadata.create_all(engine, tables=TABLES)
    return TileStore(engine, folder / "tiles")


def timed(function, runs: int = RUNS) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000, result


# ---- 1. compose and paste back --------------------------------------------------------------------


def bench_compose(folder: Path) -> list[tuple]:
    store = new_store(folder)
    width, height = 3072, 2048
    content = photo_like(width, height)
    for top in range(0, height, 512):
        store.write_region(1, 0, top, Image.fromarray(content[top:top + 512]), base_revision=None, description="band")
    # A 1024² frame half over the picture, half over empty space, with a painted circle: inpaint + outpaint.
    frame = (2560, 512, 1024, 1024)
    ys, xs = np.mgrid[0:1024, 0:1024]
    painted = Image.fromarray(np.where((xs - 300) ** 2 + (ys - 512) ** 2 < 200 ** 2, 255, 0).astype(np.uint8))
    rules = pipeline.ModelRules(32, 1440 * 1440)

    read_ms, region = timed(lambda: store.read_region(1, *frame))
    prepare_ms, prepared = timed(lambda: pipeline.prepare_frame(region, painted, "telea", 8))
    images_ms, _ = timed(lambda: pipeline.model_images(prepared, rules, "white-repaints"))
    outputs = [Image.new("RGB", (1024, 1024), colour) for colour in ((200, 40, 30), (30, 60, 200))]
    finish_ms, _ = timed(lambda: pipeline.finish_variation(region, outputs[0], prepared.paste, True))
    turn = iter(range(10**6))

    def accept():  # alternate two results, so every accept really changes pixels
        result = outputs[next(turn) % 2]
        return store.write_region(1, frame[0], frame[1], result, mask=prepared.paste, base_revision=None,
                                  description="accept")

    accept_ms, _ = timed(accept)

    canvas_image = Image.fromarray(content)
    box = (frame[0], frame[1], frame[0] + 1024, frame[1] + 1024)
    crop_ms, _ = timed(lambda: canvas_image.crop(box))
    mask_l = paste_mask(prepared.repaint, prepared.known, 8)
    paste_ms, _ = timed(lambda: canvas_image.paste(outputs[0], box, mask_l))
    compose_ms = read_ms + prepare_ms + images_ms
    return [
        ("read the 1024² frame from tiles (4 tiles)", f"{read_ms:.1f}", "ms", f"Pillow crop in memory: {crop_ms:.2f} ms", ""),
        ("prepare: known mask, masks, Telea infill of the empty half", f"{prepare_ms:.1f}", "ms", "—", ""),
        ("fit to the model + mask polarity", f"{images_ms:.1f}", "ms", "—", ""),
        ("**compose total** (frame → model input)", f"{compose_ms:.1f}", "ms",
         f"Pillow crop: {crop_ms:.2f} ms ({compose_ms / crop_ms:.0f}×)", "< 500 ms"),
        ("stage a variation: colour match + preview blend", f"{finish_ms:.1f}", "ms", "—", ""),
        ("**accept**: feathered paste into tiles, PNG + 6 levels + revision", f"{accept_ms:.1f}", "ms",
         f"Pillow paste with mask in memory: {paste_ms:.1f} ms ({accept_ms / paste_ms:.0f}×)", "< 1000 ms"),
    ]


# ---- 2. tile GET latency ------------------------------------------------------------------------


def bench_tile_get() -> list[tuple]:
    with running_tessera(workers=0, web_workers=2) as (base, _fake, env):
        client = logged_in_client(base)
        created = client.post("/canvas/", data={"name": "bench"})
        canvas_path = created.headers["Location"]
        picture = Image.fromarray(photo_like(1024, 1024))
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        client.post(f"{canvas_path}/import", data={"x": 0, "y": 0, "w": 1024, "h": 1024, "keep_size": "1"},
                    files={"image": ("bench.png", buffer.getvalue(), "image/png")}).raise_for_status()
        [tx, ty, version] = client.get(f"{canvas_path}/tiles", params={
            "level": 0, "tx0": 0, "ty0": 0, "tx1": 1, "ty1": 1}).json()["tiles"][0]
        tile_path = f"{canvas_path}/tiles/0/{tx}/{ty}/{version}.png"
        canvas_id = canvas_path.rsplit("/", 1)[1]
        relative = f"canvases/{canvas_id}/L0/{tx}_{ty}/{version}.png"
        size_kb = len(client.get(tile_path).content) / 1024

        static_port = free_port()
        static = subprocess.Popen([sys.executable, "-m", "http.server", str(static_port), "--bind", "127.0.0.1",
                                   "--directory", env["TESSERA_DATA_DIR"]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            static_url = f"http://127.0.0.1:{static_port}/{relative}"
            with httpx.Client(timeout=10) as plain:
                for _ in range(50):
                    try:
                        plain.get(static_url).raise_for_status()
                        break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                static_samples = sample(lambda: plain.get(static_url))
            app_samples = sample(lambda: client.get(tile_path))
            etag = client.get(tile_path).headers["ETag"]
            revalidate_samples = sample(lambda: client.get(tile_path, headers={"If-None-Match": etag}))
            listing_samples = sample(lambda: client.get(f"{canvas_path}/tiles", params={
                "level": 0, "tx0": -2, "ty0": -2, "tx1": 4, "ty1": 4}))
        finally:
            static.terminate()
            static.wait()
    return [
        (f"tile GET through Tessera ({size_kb:.0f} KB PNG; login + ownership check)", f"{median_ms(app_samples):.2f}",
         "ms median", f"static file server: {median_ms(static_samples):.2f} ms median", "< 10 ms"),
        ("tile GET through Tessera, p95", f"{p95_ms(app_samples):.2f}", "ms", f"static: {p95_ms(static_samples):.2f} ms", ""),
        ("revalidation (If-None-Match → 304)", f"{median_ms(revalidate_samples):.2f}", "ms median",
         "browsers skip even this: URLs are immutable", ""),
        ("tile listing for a 6×6-tile view", f"{median_ms(listing_samples):.2f}", "ms median", "one per pan step", ""),
    ]


def sample(request) -> list[float]:
    for _ in range(20):  # warm-up
        request()
    samples = []
    for _ in range(TILE_GETS):
        start = time.perf_counter()
        response = request()
        samples.append(time.perf_counter() - start)
        assert response.status_code in (200, 304), response.status_code
    return samples


# ---- 3. export memory --------------------------------------------------------------------------


def bench_export_memory(folder: Path) -> list[tuple]:
    start = time.perf_counter()
    child(folder, "build")
    build_s = time.perf_counter() - start
    baseline = child(folder, "baseline")
    streamed = child(folder, "stream")
    whole = child(folder, "whole")
    return [
        (f"export {EXPORT_SIDE}×{EXPORT_SIDE} (100 MP) as a streamed PNG: peak RSS", f"{streamed['rss']:.0f}", "MB",
         f"decoding it whole with Pillow: {whole['rss']:.0f} MB; the process at rest: {baseline['rss']:.0f} MB",
         f"< {EXPORT_TARGET_MB} MB"),
        ("… time to stream it", f"{streamed['seconds']:.1f}", "s",
         f"whole: {whole['seconds']:.1f} s; output {streamed['mb']:.0f} MB", ""),
        ("… building the canvas (400 tiles + levels, 20 band writes)", f"{build_s:.1f}", "s", "", ""),
    ]


def child(folder: Path, mode: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--export-child", mode, str(folder)],
                            check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def export_child(mode: str, folder: Path) -> None:
    """Runs in a fresh process, so its high-water mark is this measurement's peak alone."""
    store = new_store(folder)
    result = {}
    start = time.perf_counter()
    if mode == "build":
        for top in range(0, EXPORT_SIDE, 512):
            rows = min(512, EXPORT_SIDE - top)
            band = photo_like(EXPORT_SIDE, rows, seed=top, y0=top)
            store.write_region(1, 0, top, Image.fromarray(band), base_revision=None, description="band")
    elif mode == "stream":
        written = 0
        with open(os.devnull, "wb") as sink:
            for piece in export_png(store, 1, None):
                written += sink.write(piece)
        result["mb"] = written / 1e6
    elif mode == "whole":
        image = store.read_region(1, 0, 0, EXPORT_SIDE, EXPORT_SIDE)
        with open(os.devnull, "wb") as sink:
            image.save(sink, "PNG")
    result["seconds"] = time.perf_counter() - start
    result["rss"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


# ---- 4. tiles fetched while panning -----------------------------------------------------------


def level_for(zoom: float, max_level: int) -> int:
    return max(0, min(max_level, math.floor(math.log2(1 / zoom) + 1e-9)))


def tile_rect(x: float, y: float, width: float, height: float, level: int, size: int) -> tuple[int, int, int, int]:
    span = size * 2**level
    return (math.floor(x / span), math.floor(y / span), math.floor((x + width) / span) + 1,
            math.floor((y + height) / span) + 1)


def contains(outer, inner) -> bool:
    return inner[0] >= outer[0] and inner[1] >= outer[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


class SimulatedViewport:
    """canvas.js's tile logic: list the view's tiles plus a margin when the view leaves the last listing,
    load the listed tiles within PRELOAD screen pixels of the view, each version once (immutable URLs
    stay in the browser cache)."""

    def __init__(self, client, canvas_id: int, tile_size: int, max_level: int):
        self.client, self.canvas_id = client, canvas_id
        self.tile_size, self.max_level = tile_size, max_level
        self.listed = None
        self.versions: dict[tuple[int, int, int], int] = {}
        self.listings = 0
        self.frames = 0
        self.fetched: set[tuple[int, int, int, int]] = set()
        self.visible: set[tuple[int, int, int]] = set()

    def show(self, x: float, y: float, zoom: float) -> None:
        self.frames += 1
        level = level_for(zoom, self.max_level)
        width, height = VIEWPORT[0] / zoom, VIEWPORT[1] / zoom
        visible = tile_rect(x, y, width, height, level, self.tile_size)
        extent = math.ceil(PAN_GRID / 2**level)  # tiles exist at 0 <= t < extent
        for tx in range(max(visible[0], 0), min(visible[2], extent)):
            for ty in range(max(visible[1], 0), min(visible[3], extent)):
                self.visible.add((level, tx, ty))
        if self.listed is None or self.listed[0] != level or not contains(self.listed[1], visible):
            self.list(level, (visible[0] - LIST_MARGIN, visible[1] - LIST_MARGIN,
                              visible[2] + LIST_MARGIN, visible[3] + LIST_MARGIN))
        margin = PRELOAD / zoom
        near = tile_rect(x - margin, y - margin, width + 2 * margin, height + 2 * margin, level, self.tile_size)
        for (tile_level, tx, ty), version in self.versions.items():
            if tile_level == level and near[0] <= tx < near[2] and near[1] <= ty < near[3]:
                self.fetched.add((level, tx, ty, version))

    def list(self, level: int, rect: tuple[int, int, int, int]) -> None:
        self.listed = (level, rect)
        response = self.client.get(f"/canvas/{self.canvas_id}/tiles", query_string=dict(
            level=level, tx0=rect[0], ty0=rect[1], tx1=rect[2], ty1=rect[3]))
        assert response.status_code == 200, response.get_data(as_text=True)
        self.listings += 1
        for tx, ty, version in response.get_json()["tiles"]:
            self.versions[(level, tx, ty)] = version


def bench_panning(folder: Path) -> list[tuple]:
    os.environ["TESSERA_DATA_DIR"] = str(folder / "data")
    os.environ.pop("DATABASE_URL", None)
    from app import create_app
    from app.canvas.models import Canvas
    from app.canvas.staging import tile_store
    from app.extensions import db
    from app.models import User

    app = create_app({"TESTING": True})
    rows = []
    with app.app_context():
        db.create_all()
        user = User(username="bench")
        user.set_password("bench password 1")
        db.session.add(user)
        db.session.commit()
        canvas = Canvas(user_id=user.id, name="10,000 tiles", settings={})
        db.session.add(canvas)
        db.session.commit()
        store = tile_store()
        # Only the index matters to the listing endpoint: rows for every tile of every level, no files.
        index = [{"canvas_id": canvas.id, "level": level, "tx": tx, "ty": ty, "version": 1}
                 for level in range(store.levels + 1)
                 for tx in range(math.ceil(PAN_GRID / 2**level)) for ty in range(math.ceil(PAN_GRID / 2**level))]
        with db.engine.begin() as conn:
            conn.execute(insert(canvas_tile), index)
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = str(user.id)
        side = PAN_GRID * store.tile_size

        def pan_across(zoom: float, step_px: float = 8) -> SimulatedViewport:
            """Drag from the left edge to the right edge along the middle, step_px screen pixels a frame."""
            viewport = SimulatedViewport(client, canvas.id, store.tile_size, store.levels)
            y = side / 2 - VIEWPORT[1] / zoom / 2
            x = -VIEWPORT[0] / zoom / 2
            while x < side - VIEWPORT[0] / zoom / 2:
                viewport.show(x, y, zoom)
                x += step_px / zoom
            return viewport

        for zoom, label in ((1.0, "100%"), (0.25, "25%"), (1 / 16, "6.25%")):
            viewport = pan_across(zoom)
            level = level_for(zoom, store.levels)
            rows.append((f"pan across the canvas at {label} (level {level}): tiles fetched", len(viewport.fetched),
                         "tiles", f"ever visible: {len(viewport.visible)}; canvas: {PAN_GRID * PAN_GRID:,} tiles at level 0",
                         "≈ visible"))
            rows.append((f"… listing requests over {viewport.frames:,} drag frames", viewport.listings, "requests",
                         "one per tile column crossed", ""))
        viewport = SimulatedViewport(client, canvas.id, store.tile_size, store.levels)
        zoom = 1.0
        while zoom > 1 / 16:
            viewport.show(side / 2 - VIEWPORT[0] / zoom / 2, side / 2 - VIEWPORT[1] / zoom / 2, zoom)
            zoom *= 0.8
        rows.append(("zoom out 100% → 6.25% over the centre (wheel steps of 0.8×): tiles fetched", len(viewport.fetched),
                     "tiles", f"ever visible: {len(viewport.visible)}", "≈ visible"))
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-canvas-") as tmp:
        tmp_path = Path(tmp)
        for name in ("compose", "export", "pan"):
            (tmp_path / name).mkdir()
        compose_rows = bench_compose(tmp_path / "compose")
        print_table("Compose and paste back a 1024×1024 frame (median of 5)", compose_rows)
        pan_rows = bench_panning(tmp_path / "pan")
        print_table(f"Panning a {PAN_GRID}×{PAN_GRID}-tile canvas in a {VIEWPORT[0]}×{VIEWPORT[1]} viewport "
                    "(canvas.js's listing rule, real listing endpoint)", pan_rows)
        export_rows = bench_export_memory(tmp_path / "export")
        print_table("Exporting a 100-megapixel canvas (each in a fresh process)", export_rows)
    tile_rows = bench_tile_get()
    print_table(f"Tile GET, {TILE_GETS} sequential keep-alive requests (tessera up: 2 gunicorn processes × 8 threads)",
                tile_rows)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--export-child":
        export_child(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
