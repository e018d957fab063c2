"""Canvas figures, each side by side with its baseline:

1. compose + paste-back of a 1024×1024 frame (tiles → frame → model input; accept through the paste mask)
   against the raw Pillow crop and paste of the same pixels in memory; accept and the staged preview
   with the tile encodings and level-building choices side by side (what TileStore uses, and why);
0. tile encodings side by side (encode, decode, size of a photo-like 512² tile);
5. peak memory of six concurrent 64-megapixel imports through `tessera up`, against one import decoded
   whole with Pillow (as imports were read before);
2. tile GET latency through `tessera up` against the same file from a plain static file server;
3. peak memory (RSS) of exporting a 100-megapixel canvas as a streamed PNG, against decoding it whole;
4. tiles fetched while panning across a canvas of 10,000 tiles, simulating canvas.js's viewport logic
   (static/js/canvas/tiles.js) against the real tile-listing endpoint.

Peak memory is read from /proc/self/status (VmHWM) in a fresh process: getrusage's ru_maxrss would
include the parent's size, which the kernel carries over into a forked child across exec.

1b. accept and undo through the app (HTTP test client, SQLite as `tessera up` runs it): wall time beside
   CPU time, and the wall time spent in fsync and in SQLite COMMITs.

Every timed row gives wall time (what the user waits) beside CPU time (every thread of this process):
on a busy machine the gap is mostly other processes' turn on the CPU; on a quiet one it is waits.

Run: python bench/bench_canvas.py [--sections encode,compose,accept,import,pan,export,tiles]
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import create_engine, insert

from common import ROOT, free_port, logged_in_client, median_ms, p95_ms, print_table, running_tessera

from app.canvas import pipeline  # noqa: E402
from app.canvas.compose import paste_mask  # noqa: E402
from tests.live import wait_until_healthy  # noqa: E402
from common import PASSWORD  # noqa: E402
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


def new_store(folder: Path, **options) -> TileStore:
    engine = create_engine(f"sqlite:///{folder}/bench.db")
    metadata.create_all(engine, tables=TABLES)
    return TileStore(engine, folder / "tiles", **options)


def cpu_timed(function, runs: int = RUNS) -> tuple[float, float, object]:
    """(median wall ms, median CPU ms of this process, last result). CPU time counts every thread of
    the process and not the other processes sharing the machine: the fair figure on a busy machine."""
    walls, cpus, result = [], [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000, result


def timed(function, runs: int = RUNS) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000, result


# ---- 1. compose and paste back --------------------------------------------------------------------


def bench_encodings() -> list[tuple]:
    """Encode/decode time and size of one photo-like 512² RGBA tile in each lossless format a browser shows."""
    tile = Image.fromarray(photo_like(512, 512))
    rows = []
    candidates = [(f"PNG, zlib level {level}", {"format": "PNG", "compress_level": level}) for level in (0, 1, 3, 6)]
    candidates.append(("WebP lossless, method 0", {"format": "WEBP", "lossless": True, "quality": 0, "method": 0,
                                                   "exact": True}))
    for label, options in candidates:
        def encode():
            buffer = io.BytesIO()
            tile.save(buffer, **options)
            return buffer.getvalue()
        encode_ms, data = timed(encode, runs=9)
        decode_ms, pixels = timed(lambda: np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")), runs=9)
        assert np.array_equal(pixels, np.asarray(tile)), f"{label} is not lossless"
        chosen = "**chosen**" if "level 1" in label else ""
        rows.append((label, f"{encode_ms:.1f}", "ms to encode", f"decode {decode_ms:.1f} ms; {len(data) / 1024:.0f} KB",
                     chosen))
    return rows


def bench_compose(folder: Path) -> list[tuple]:
    content = photo_like(3072, 2048)
    # A 1024² frame half over the picture, half over empty space, with a painted circle: inpaint + outpaint.
    frame = (2560, 512, 1024, 1024)
    ys, xs = np.mgrid[0:1024, 0:1024]
    painted = Image.fromarray(np.where((xs - 300) ** 2 + (ys - 512) ** 2 < 200 ** 2, 255, 0).astype(np.uint8))
    rules = pipeline.ModelRules(32, 1440 * 1440)
    outputs = [Image.new("RGB", (1024, 1024), colour) for colour in ((200, 40, 30), (30, 60, 200))]

    def build(name: str, **options) -> TileStore:
        (folder / name).mkdir()
        store = new_store(folder / name, **options)
        for top in range(0, 2048, 512):
            store.write_region(1, 0, top, Image.fromarray(content[top:top + 512]), base_revision=None,
                               description="band")
        store.wait_for_levels()
        return store

    store = build("chosen", build_levels="background")
    read_ms, region = timed(lambda: store.read_region(1, *frame))
    prepare_ms, prepared = timed(lambda: pipeline.prepare_frame(region, painted, "telea", 8))
    images_ms, _ = timed(lambda: pipeline.model_images(prepared, rules, "white-repaints"))

    def stage(colour_match: bool):
        """What the job does per output once the model answered: finish, then write result and preview."""
        result, preview = pipeline.finish_variation(region, outputs[0], prepared.paste, colour_match, prepared.keep)
        pipeline.save_variation(folder / "result.png", result, folder / "preview.webp", preview)

    def stage_as_before():
        """Before: both written one after the other as PNG level 1."""
        result, preview = pipeline.finish_variation(region, outputs[0], prepared.paste, False, prepared.keep)
        pipeline.save_png(folder / "result.png", result)
        pipeline.save_png(folder / "preview.png", preview)

    stage_ms, stage_cpu, _ = cpu_timed(lambda: stage(False), runs=9)
    stage_matched_ms, _, _ = cpu_timed(lambda: stage(True))
    stage_before_ms, stage_before_cpu, _ = cpu_timed(stage_as_before, runs=9)

    def accept_on(target: TileStore, runs: int = 9) -> tuple[float, float, float]:
        """(p50 wall ms, p50 CPU ms, max wall ms) of accepts, each followed by its levels (not timed)."""
        turn = iter(range(10**6))
        walls, cpus = [], []
        for _ in range(runs):
            result = outputs[next(turn) % 2]  # alternate two results, so every accept really changes pixels
            wall, cpu = time.perf_counter(), time.process_time()  # every thread: tiles are encoded side by side
            target.write_region(1, frame[0], frame[1], result, mask=prepared.paste, base_revision=None,
                                description="accept")
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
            target.wait_for_levels()  # the levels of one accept are built before the next starts
        return statistics.median(walls) * 1000, statistics.median(cpus) * 1000, max(walls) * 1000

    accept_ms, accept_cpu, accept_max = accept_on(store)
    start = time.perf_counter()
    accept_on(store, runs=1)
    levels_after_ms = (time.perf_counter() - start) * 1000
    now_ms, now_cpu, _ = accept_on(build("levels-now", build_levels="now"))
    png3_ms, png3_cpu, _ = accept_on(build("png3-levels-now", build_levels="now", compress_level=3))

    canvas_image = Image.fromarray(content)
    box = (frame[0], frame[1], frame[0] + 1024, frame[1] + 1024)
    crop_ms, _ = timed(lambda: canvas_image.crop(box))
    paste_ms, _ = timed(lambda: canvas_image.paste(outputs[0], box, prepared.paste))
    compose_ms = read_ms + prepare_ms + images_ms
    read_cpu, prepare_cpu, images_cpu = (cpu_timed(step)[1] for step in (
        lambda: store.read_region(1, *frame), lambda: pipeline.prepare_frame(region, painted, "telea", 8),
        lambda: pipeline.model_images(prepared, rules, "white-repaints")))
    return [
        ("read the 1024² frame from tiles (4 tiles)", f"{read_ms:.1f}", f"{read_cpu:.1f}",
         f"Pillow crop in memory: {crop_ms:.2f} ms", ""),
        ("prepare: known mask, masks, Telea infill of the empty half", f"{prepare_ms:.1f}", f"{prepare_cpu:.1f}", "", ""),
        ("fit to the model + mask polarity", f"{images_ms:.1f}", f"{images_cpu:.1f}", "", ""),
        ("**compose total** (frame → model input)", f"{compose_ms:.1f}", f"{read_cpu + prepare_cpu + images_cpu:.1f}",
         f"Pillow crop: {crop_ms:.2f} ms ({compose_ms / crop_ms:.0f}×)", "< 500 ms"),
        ("**staged preview**: finish a variation + write result (PNG 0) and preview (WebP) side by side",
         f"{stage_ms:.1f}", f"{stage_cpu:.1f}", f"both as PNG level 1 in turn (before): {stage_before_ms:.1f} ms wall, "
         f"{stage_before_cpu:.1f} ms CPU; with colour match: {stage_matched_ms:.1f} ms wall", "≤ 100 ms"),
        ("**accept**, tile store only (chosen: PNG level 1, tiles side by side, levels built after on a thread)",
         f"{accept_ms:.1f}", f"{accept_cpu:.1f}",
         f"max {accept_max:.1f} ms wall; Pillow paste with mask in memory: {paste_ms:.1f} ms", "≤ 150 ms"),
        ("… accept and then its 6 levels built (the thread's work)", f"{levels_after_ms:.1f}", "—", "off the request", ""),
        ("accept, PNG level 1, levels built inside the accept", f"{now_ms:.1f}", f"{now_cpu:.1f}", "", ""),
        ("accept, PNG level 3, levels built inside the accept (≈ before)", f"{png3_ms:.1f}", f"{png3_cpu:.1f}", "", ""),
    ]


# ---- 1b. accept through the app: where wall time goes beyond CPU --------------------------------

WALL_CPU_HEADER = ("what", "wall p50 (ms)", "CPU p50 (ms)", "wall − CPU: where it went", "target (wall)")


class FsyncClock:
    """Wall time spent in os.fsync while it is installed (tile files and their folders): a wait CPU time misses."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self._fsync = os.fsync

        def fsync(fd):
            start = time.perf_counter()
            try:
                return self._fsync(fd)
            finally:
                self.seconds += time.perf_counter() - start

        os.fsync = fsync
        return self

    def __exit__(self, *exc):
        os.fsync = self._fsync


def bench_accept_app(folder: Path) -> list[tuple]:
    """POST accept and undo of a staged 1024² variation, and mask steps, through the Flask app (test client, SQLite in
    WAL mode as `tessera up` runs it), timing wall and thread CPU per request and the wall spent in
    fsync (tile files and their folders) and in SQLite COMMITs."""
    os.environ.update({"TESSERA_DATA_DIR": str(folder / "data"), "REDIS_URL": "redis://127.0.0.1:1/0",
                       "SECRET_KEY": "bench"})
    os.environ.pop("DATABASE_URL", None)
    from app import create_app
    from app.canvas import staging
    from app.canvas.models import Canvas, CanvasVariation
    from app.extensions import db
    from app.models import User

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.create_all()
        user = User(username="bench")
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        canvas = Canvas(user_id=user.id, name="bench", settings={})
        db.session.add(canvas)
        db.session.commit()
        store = staging.tile_store()
        content = photo_like(3072, 2048)
        for top in range(0, 2048, 512):
            store.write_region(canvas.id, 0, top, Image.fromarray(content[top:top + 512]), base_revision=None,
                               description="band")
        store.wait_for_levels()
        frame = (2560, 512, 1024, 1024)
        region = store.read_region(canvas.id, *frame)
        ys, xs = np.mgrid[0:1024, 0:1024]
        painted = Image.fromarray(np.where((xs - 300) ** 2 + (ys - 512) ** 2 < 200 ** 2, 255, 0).astype(np.uint8))
        prepared = pipeline.prepare_frame(region, painted, "telea", 8)
        request = staging.create_request(canvas, model_ref="bench/model", model_input={"prompt": "bench"},
                                         frame=frame, painted=painted, infill="telea", mask_blur=8,
                                         colour_match=False)
        request.base_revision = store.head(canvas.id)
        request.paste_mask_path = (staging.request_dir(request) / "paste-mask.png").as_posix()
        pipeline.save_png(staging.data_dir() / request.paste_mask_path, prepared.paste)
        db.session.flush()
        variation = CanvasVariation(request_id=request.id, canvas_id=canvas.id, user_id=user.id, output_index=0,
                                    result_path=(staging.request_dir(request) / "result-0.png").as_posix(),
                                    preview_path=(staging.request_dir(request) / "preview-0.webp").as_posix())
        db.session.add(variation)
        result, preview = pipeline.finish_variation(region, Image.new("RGB", (1024, 1024), (200, 40, 30)),
                                                    prepared.paste, False, prepared.keep)
        pipeline.save_variation(staging.data_dir() / variation.result_path, result,
                                staging.data_dir() / variation.preview_path, preview)
        db.session.commit()
        canvas_id, variation_id, login_id = canvas.id, variation.id, user.get_id()

        raw_commit_wall = [0.0]
        original_commit = db.engine.dialect.do_commit

        def do_commit(dbapi_connection):
            start = time.perf_counter()
            try:
                return original_commit(dbapi_connection)
            finally:
                raw_commit_wall[0] += time.perf_counter() - start

        db.engine.dialect.do_commit = do_commit
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = login_id
            session["_fresh"] = True
        rows = {"accept": [], "undo": []}
        for _ in range(9):
            for what, url in (("accept", f"/canvas/{canvas_id}/variations/{variation_id}/accept"),
                              ("undo", f"/canvas/{canvas_id}/undo")):
                with FsyncClock() as clock:
                    raw_commit_wall[0] = 0.0
                    wall, cpu = time.perf_counter(), time.process_time()
                    response = client.post(url, data={"force": "1"})
                    cpu = time.process_time() - cpu
                    wall = time.perf_counter() - wall
                assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
                rows[what].append((wall, cpu, clock.seconds, raw_commit_wall[0]))
                store.wait_for_levels()  # the background level builds of one accept end before the next
        # A brush stroke across the frame (1024×64 box) and a "clear mask" of the whole frame, pushed as
        # history steps: what the page sends in the background after every mask edit.
        import zlib

        ys, xs = np.mgrid[0:64, 0:1024]
        stroke_after = np.where((ys - 32) ** 2 < 30 ** 2, 255, 0).astype(np.uint8)
        full_before = np.where((np.mgrid[0:1024, 0:1024][0] // 64) % 2, 255, 0).astype(np.uint8)
        pushes = {
            "stroke": ((0, 0, 1024, 64), zlib.compress(bytes(1024 * 64) + stroke_after.tobytes())),
            "clear": ((0, 0, 1024, 1024), zlib.compress(full_before.tobytes() + bytes(1024 * 1024))),
        }
        for _ in range(9):
            for what, (box, data) in pushes.items():
                form = {"label": what, "x": box[0], "y": box[1], "w": box[2], "h": box[3],
                        "alpha": (io.BytesIO(data), "alpha.zlib")}
                with FsyncClock() as clock:
                    raw_commit_wall[0] = 0.0
                    wall, cpu = time.perf_counter(), time.process_time()
                    response = client.post(f"/canvas/{canvas_id}/history/mask", data=form,
                                           content_type="multipart/form-data")
                    cpu = time.process_time() - cpu
                    wall = time.perf_counter() - wall
                assert response.status_code == 200, response.get_data(as_text=True)[:300]
                rows.setdefault(what, []).append((wall, cpu, clock.seconds, raw_commit_wall[0]))
        db.engine.dialect.do_commit = original_commit

    def row(what, samples, target):
        wall, cpu, fsync, commit = (statistics.median(column) * 1000 for column in zip(*samples))
        return (what, f"{wall:.1f}", f"{cpu:.1f}",
                f"fsync {fsync:.1f} ms, SQLite COMMIT {commit:.1f} ms, other waits {max(0.0, wall - cpu - fsync - commit):.1f} ms",
                target)

    return [row("**accept** (POST …/accept: claim, paste 4 tiles, revision, answer)", rows["accept"], "≤ 150 ms"),
            row("undo of that accept (POST …/undo: versions restored, variations staged again)", rows["undo"], ""),
            row("mask step pushed after a brush stroke (1024×64 box; sent in the background, painting "
                "never waits)", rows["stroke"], ""),
            row("mask step pushed after \"clear mask\" of a 1024² frame", rows["clear"], "")]


# ---- 5. memory of concurrent imports ------------------------------------------------------------

IMPORT_SIDE = 8000  # 64 megapixels
IMPORTS = 6


def import_picture(folder: Path) -> Path:
    path = folder / "import-64mp.jpg"
    if not path.exists():
        band_rows = 1000
        image = Image.new("RGB", (IMPORT_SIDE, IMPORT_SIDE))
        for top in range(0, IMPORT_SIDE, band_rows):
            image.paste(Image.fromarray(photo_like(IMPORT_SIDE, band_rows, seed=top, y0=top)[..., :3]), (0, top))
        image.save(path, "JPEG", quality=90)
    return path


def bench_import_memory(folder: Path) -> list[tuple]:
    picture = import_picture(folder)
    size_mb = picture.stat().st_size / 1e6
    whole = json.loads(subprocess.run([sys.executable, __file__, "--import-child", str(picture)], check=True,
                                      capture_output=True, text=True, cwd=ROOT).stdout.strip().splitlines()[-1])
    with running_server(folder / "server") as (base, pid):
        clients = [logged_in_client(base) for _ in range(IMPORTS)]
        canvases = []
        for index, client in enumerate(clients):
            created = client.post("/canvas/", data={"name": f"import {index}"})
            canvases.append(created.headers["Location"])
        workers = web_worker_pids(pid)
        at_rest = {worker: rss_mb(worker) for worker in workers}
        data = picture.read_bytes()
        answers, barrier = [], threading.Barrier(IMPORTS)

        def send(client, canvas_path):
            barrier.wait()
            start = time.perf_counter()
            response = client.post(f"{canvas_path}/import", data={"x": 0, "y": 0, "w": 1024, "h": 1024,
                                                                   "fit": "contain"},
                                   files={"image": ("big.jpg", data, "image/jpeg")}, timeout=600)
            answers.append((response.status_code, time.perf_counter() - start))

        threads = [threading.Thread(target=send, args=pair) for pair in zip(clients, canvases)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peaks = {worker: peak_rss_of(worker) for worker in workers}
        after = {worker: rss_mb(worker) for worker in workers}
        full = clients[0].post(f"{canvases[0]}/import", data={"x": 0, "y": 0, "w": 1024, "h": 1024, "fit": "none"},
                               files={"image": ("big.jpg", data, "image/jpeg")}, timeout=600)
        full_peak = max(peak_rss_of(worker) for worker in workers)
    assert all(status == 200 for status, _ in answers), answers
    assert full.status_code == 200, full.text
    growth = max(peaks[w] - at_rest[w] for w in workers)
    return [
        (f"{IMPORTS} concurrent imports of a 64 MP JPEG ({size_mb:.0f} MB) into a 1024² frame: peak RSS of the web "
         "process", f"{max(peaks.values()):.0f}", "MB", f"at rest before: {max(at_rest.values()):.0f} MB "
         f"(+{growth:.0f} MB for all {IMPORTS}, {growth / IMPORTS:.0f} MB each incl. the upload)", "tens of MB each"),
        ("… RSS after the burst", f"{max(after.values()):.0f}", "MB", "kept after the burst?", ""),
        ("… slowest of the six", f"{max(t for _, t in answers):.1f}", "s", "", ""),
        ("one 64 MP import at full size (8000² written as 256 tiles + levels): peak RSS", f"{full_peak:.0f}", "MB",
         "same process, after the burst", ""),
        ("one 64 MP import decoded whole with Pillow, as before (RGBA + resize): peak RSS", f"{whole['rss']:.0f}", "MB",
         f"its process at rest: {whole['rest']:.0f} MB", ""),
    ]


def import_child(path: str) -> None:
    """The old import in a fresh process: Pillow decodes the picture whole, converts it, resizes it."""
    from PIL import ImageOps
    rest = peak_rss_mb()
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGBA")
        scale = min(1024 / image.width, 1024 / image.height)
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    print(json.dumps({"rss": peak_rss_mb(), "rest": rest}))


class running_server:
    """`tessera up` (one web process, 8 threads, no job workers) with the bench account; yields (base, pid)."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TESSERA_DATA_DIR": str(self.folder), "REPLICATE_API_TOKEN": "",
               "TESSERA_MAX_IMAGE_MB": "60"}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "bench"], input=PASSWORD + "\n",
                       text=True, env=env, check=True, capture_output=True, cwd=ROOT)
        port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "0",
                                         "--web-workers", "1"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, self.process)
        return base, self.process.pid

    def __exit__(self, *exc):
        self.process.send_signal(2)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def web_worker_pids(root_pid: int) -> list[int]:
    """The gunicorn worker processes under a `tessera up` (processes whose parent is gunicorn's master)."""
    children: dict[int, list[int]] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        for child in children.get(pid, []):
            stack.append(child)
            parent_is_gunicorn = "gunicorn" in commands.get(pid, "")
            if parent_is_gunicorn and "gunicorn" in commands.get(child, ""):
                found.append(child)
    return found


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def peak_rss_of(pid: int) -> float:
    return rss_mb(pid, "VmHWM")


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
        ("… building the canvas (400 tiles + levels, 20 band writes; levels on the thread, waited for)",
         f"{build_s:.1f}", "s", "", ""),
    ]


def child(folder: Path, mode: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--export-child", mode, str(folder)],
                            check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


def export_child(mode: str, folder: Path) -> None:
    """Runs in a fresh process, so its high-water mark is this measurement's peak alone."""
    store = new_store(folder, build_levels="background")
    result = {}
    start = time.perf_counter()
    if mode == "build":
        for top in range(0, EXPORT_SIDE, 512):
            rows = min(512, EXPORT_SIDE - top)
            band = photo_like(EXPORT_SIDE, rows, seed=top, y0=top)
            store.write_region(1, 0, top, Image.fromarray(band), base_revision=None, description="band")
        result["written"] = time.perf_counter() - start
        store.wait_for_levels()
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
        # Only the index matters to the listing endpoint: a row for every level 0 tile, no files (the
        # levels' versions are computed from them by the listing).
        index = [{"canvas_id": canvas.id, "level": 0, "tx": tx, "ty": ty, "version": 1}
                 for tx in range(PAN_GRID) for ty in range(PAN_GRID)]
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


SECTIONS = ("encode", "compose", "accept", "import", "pan", "export", "tiles")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, from {', '.join(SECTIONS)} (default: all; export takes minutes)")
    sections = set(parser.parse_args().sections.split(","))
    with tempfile.TemporaryDirectory(prefix="tessera-bench-canvas-") as tmp:
        tmp_path = Path(tmp)
        for name in ("compose", "export", "pan", "import", "accept"):
            (tmp_path / name).mkdir()
        if "encode" in sections:
            print_table("Tile encodings: one photo-like 512² RGBA tile (median of 9)", bench_encodings())
        if "compose" in sections:
            print_table("Compose, stage and accept a 1024×1024 frame (median of 5; wall time beside CPU time)",
                        bench_compose(tmp_path / "compose"),
                        header=("what", "wall p50 (ms)", "CPU p50 (ms)", "compared with", "target (wall)"))
        if "accept" in sections:
            print_table("Accept and undo through the app (POST …/accept, …/undo: rows, SQLite commits, tile files "
                        "fsynced), a 1024×1024 frame, 9 runs; wall time beside CPU time", bench_accept_app(tmp_path),
                        header=WALL_CPU_HEADER)
        if "import" in sections:
            print_table(f"Importing 64-megapixel pictures ({IMPORTS} at once)", bench_import_memory(tmp_path / "import"))
        if "pan" in sections:
            pan_rows = bench_panning(tmp_path / "pan")
            print_table(f"Panning a {PAN_GRID}×{PAN_GRID}-tile canvas in a {VIEWPORT[0]}×{VIEWPORT[1]} viewport "
                        "(canvas.js's listing rule, real listing endpoint)", pan_rows)
        if "export" in sections:
            export_rows = bench_export_memory(tmp_path / "export")
            print_table("Exporting a 100-megapixel canvas (each in a fresh process)", export_rows)
    if "tiles" in sections:
        tile_rows = bench_tile_get()
        print_table(f"Tile GET, {TILE_GETS} sequential keep-alive requests (tessera up: 2 gunicorn processes × 8 threads)",
                    tile_rows)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--export-child":
        export_child(sys.argv[2], Path(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "--import-child":
        import_child(sys.argv[2])
    else:
        main()
