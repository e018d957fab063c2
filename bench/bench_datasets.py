"""Datasets at scale: 10,000 small images with captions (or 100,000 with --large), side by side in one run.

    python bench/bench_datasets.py [--images 10000]
    python bench/bench_datasets.py --large          # 100,000 images of 256×256 (several minutes)

Builds its own dataset in a temporary folder (with its own SQLite database), then measures scanning
and indexing, thumbnails (the job vs a plain Pillow loop over the same files; not with --large),
grid and filtered page latency through the real routes, and a tag rename across every caption
against the bare-filesystem floor measured in the same run. The routes run in a separate "web"
process (spawned, like a gunicorn worker) whose peak RSS is reported. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMAGE_SIZE = (768, 512)  # small photos: JPEG, like most real datasets
VOCABULARY = [f"tag {n}" for n in range(300)] + ["long hair", "short hair", "smile", "hat", "outdoors"]


def build_dataset(folder: Path, count: int, size: tuple[int, int] = IMAGE_SIZE, processes: int = 1) -> None:
    folder.mkdir(parents=True)
    if processes > 1:
        bounds = [count * i // processes for i in range(processes + 1)]
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            pool.starmap(_build_range, [(folder, start, stop, size) for start, stop in zip(bounds, bounds[1:])])
    else:
        _build_range(folder, 0, count, size)


def _build_range(folder: Path, start: int, stop: int, size: tuple[int, int]) -> None:
    import numpy as np
    from PIL import Image

    rng = random.Random(start + 1)
    noise = np.random.default_rng(start + 1)
    for n in range(start, stop):
        sub = folder / f"part{n // 1000:02d}"
        sub.mkdir(exist_ok=True)
        pixels = noise.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR)
        image.save(sub / f"img{n:05d}.jpg", quality=85)
        tags = ["tok", "1girl", *rng.sample(VOCABULARY, 14)]
        (sub / f"img{n:05d}.txt").write_text(", ".join(tags), encoding="utf-8")


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_ms(fn, runs: int = 15) -> float:
    fn()  # warm caches, as a user's second request would be
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def filesystem_floor(folder: Path, count: int) -> float:
    """Seconds to replace `count` tiny files durably and atomically on this disk with nothing else:
    write them all as temp files, one sync, rename each over its file. No tool can do less."""
    folder.mkdir()
    for n in range(count):
        (folder / f"{n}.txt").write_text("a, b")
    os.sync()
    start = time.perf_counter()
    for n in range(count):
        (folder / f".{n}.tmp").write_text("a, c")
    os.sync()
    for n in range(count):
        os.replace(folder / f".{n}.tmp", folder / f"{n}.txt")
    return time.perf_counter() - start


def plain_pillow_thumbnails(files: list[Path], out: Path) -> None:
    from PIL import Image

    out.mkdir()
    for number, path in enumerate(files):
        with Image.open(path) as image:
            image.thumbnail((256, 256))
            image.save(out / f"{number}.webp", "WEBP", quality=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--large", action="store_true", help="100,000 images of 256×256 (overrides --images)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tessera-bench-datasets-"))
    # The same rename on a RAM disk shows what Tessera itself costs, without the disk.
    ram_dir = None
    if not args.large and Path("/dev/shm").is_dir():
        ram_dir = Path(tempfile.mkdtemp(prefix="tessera-bench-", dir="/dev/shm"))
    try:
        if args.large:
            run(100_000, workdir, None, size=(256, 256), large=True)
        else:
            run(args.images, workdir, ram_dir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if ram_dir:
            shutil.rmtree(ram_dir, ignore_errors=True)


def web_process(env: dict, dataset_id: int, user_id: int, count: int, out) -> None:
    """The web side, in its own process: grid and filter latency, the rename, peak RSS."""
    os.environ.update(env)
    from app import create_app

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = str(user_id)
        session["_fresh"] = True

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    base = f"/datasets/{dataset_id}"
    deep = (count * 9 // 10) // 60 * 60
    rows = [
        ("Grid rows, first page (60 images)", f"{median_ms(lambda: get(f'{base}/grid?offset=0')):.1f}", "ms median", "", "< 50 ms"),
        (f"Grid rows, deep page (offset {deep:,})", f"{median_ms(lambda: get(f'{base}/grid?offset={deep}')):.1f}",
         "ms median", "", "< 50 ms"),
        ("Filtered grid: `tag 1 AND NOT tag 2`", f"{median_ms(lambda: get(f'{base}/grid?q=tag+1+AND+NOT+tag+2')):.1f}",
         "ms median", "", "< 50 ms"),
        ("Filtered grid: `(smile OR hat) -outdoors` + text search",
         f"{median_ms(lambda: get(f'{base}/grid?q=(smile+OR+hat)+-outdoors&search=tag+3')):.1f}", "ms median", "", "< 50 ms"),
        ("Tag suggestions for `lon` (combobox)", f"{median_ms(lambda: get(f'{base}/complete?tag=lon')):.1f}", "ms median", "", "—"),
    ]

    def rename(old: str, new: str) -> float:
        seconds, response = timed(lambda: client.post(f"{base}/bulk", data={"action": "rename", "old": old, "new": new}))
        assert response.status_code == 303
        return seconds

    first = rename("1girl", "1woman")
    second = rename("1woman", "1girl")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"rows": rows, "first": first, "second": second, "peak_mb": peak_mb})


def run(count: int, workdir: Path, ram_dir: Path | None, size: tuple[int, int] = IMAGE_SIZE, large: bool = False) -> None:
    os.environ["TESSERA_DATA_DIR"] = str(workdir / "data")
    os.environ.pop("DATABASE_URL", None)
    os.environ["TESSERA_DATASET_ROOTS"] = ",".join(str(p) for p in (workdir / "data" / "datasets", ram_dir) if p)

    from app import create_app
    from app.datasets import index
    from app.datasets.history import recent_batches
    from app.datasets.models import Dataset, DatasetImage
    from app.datasets.scan import scan_folder
    from app.datasets.tasks import run_thumbnails
    from app.extensions import db
    from app.models import Job, User

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    folder = Path(app.config["DATASET_ROOTS"][0]) / "bench"
    print(f"Building {count:,} images with captions in {folder} …", file=sys.stderr)
    build_dataset(folder, count, size, processes=2 if large else 1)
    rows = []

    with app.app_context():
        db.create_all()
        user = User(username="bench")
        user.set_password("bench password")
        db.session.add(user)
        db.session.commit()
        dataset = Dataset(user_id=user.id, name="bench", root=str(folder), settings={})
        db.session.add(dataset)
        db.session.commit()

        scan_s, result = timed(lambda: scan_folder(folder, known={}, workers=2))
        index_s, _ = timed(lambda: index.apply_scan(dataset, result))
        rows.append(("Scan (read, hash, pHash) of new images", f"{scan_s:.1f}", "s",
                     f"{count / scan_s:,.0f} images/s", "—"))
        rows.append(("Index into the database (images + tags)", f"{index_s:.2f}", "s",
                     f"{db.session.scalar(db.select(db.func.count()).select_from(index.TAGS)):,} tag rows", "—"))
        rescan_s, again = timed(lambda: scan_folder(folder, known=index.known_state(dataset.id), workers=2))
        assert not again.added and not again.changed
        rows.append(("Rescan, nothing changed", f"{rescan_s:.2f}", "s", "walk + stat only", "—"))

        if not large:
            files = [folder / row.relpath for row in db.session.scalars(db.select(DatasetImage).order_by(DatasetImage.relpath))]
            plain_s, _ = timed(lambda: plain_pillow_thumbnails(files, workdir / "plain-thumbs"))
            job = Job(id="bench-thumbs", user_id=user.id, kind="datasets.thumbs", task="app.datasets.tasks.run_thumbnails",
                      params={"dataset_id": dataset.id}, result={})
            db.session.add(job)
            db.session.commit()
            job_s, _ = timed(lambda: run_thumbnails(job.id))
            rows.append(("Thumbnails: plain Pillow loop (open, thumbnail, save WebP)", f"{len(files) / plain_s:,.0f}",
                         "images/s", f"{plain_s:.1f} s", "—"))
            rows.append(("Thumbnails: the job (draft decode, threads, dedupe by hash)", f"{len(files) / job_s:,.0f}",
                         "images/s", f"{plain_s / job_s:.1f}× plain Pillow", "faster than plain"))

        floor = filesystem_floor(workdir / "floor", count)
        env = {key: os.environ[key] for key in ("TESSERA_DATA_DIR", "TESSERA_DATASET_ROOTS")}
        queue = multiprocessing.get_context("spawn").Queue()
        web = multiprocessing.get_context("spawn").Process(target=web_process, args=(env, dataset.id, user.id, count, queue))
        web.start()
        measured = queue.get()
        web.join()
        rows += measured["rows"]
        first, second = measured["first"], measured["second"]
        changed = sum(1 for path in folder.rglob("*.txt") if "1girl" in path.read_text())
        assert changed == count, changed
        rows.append(("Bare filesystem: that many temp files, one sync, renames", f"{floor:.2f}", "s",
                     "the floor for durable atomic replaces on this disk", "—"))
        rows.append(("Rename a tag in every caption, first time (also backs up originals)", f"{first:.2f}", "s",
                     f"{first / floor:.2f}× the floor", "≤ 1.3× floor"))
        rows.append(("Rename a tag in every caption, again", f"{second:.2f}", "s", f"{second / floor:.2f}× the floor",
                     "≤ 1.3× floor"))
        rows.append(("Peak RSS of the web process (routes above, rename included)", f"{measured['peak_mb']:.0f}", "MB",
                     "", "< 400 MB"))
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = str(user.id)
            session["_fresh"] = True

        def rename(old: str, new: str) -> float:
            seconds, response = timed(lambda: client.post(f"{base}/bulk", data={"action": "rename", "old": old, "new": new}))
            assert response.status_code == 303
            return seconds

        base = f"/datasets/{dataset.id}"
        undo_batch = recent_batches(dataset.id, limit=1)[0]
        undo_s, _ = timed(lambda: client.post(f"{base}/history/{undo_batch.id}/undo"))
        rows.append(("Undo that rename (one batch)", f"{undo_s:.2f}", "s", f"{changed:,} files", "—"))

        if ram_dir is not None:
            ram_folder = ram_dir / "bench"
            build_dataset(ram_folder, count, size=(16, 16))
            ram_dataset = Dataset(user_id=user.id, name="ram", root=str(ram_folder), settings={})
            db.session.add(ram_dataset)
            db.session.commit()
            index.apply_scan(ram_dataset, scan_folder(ram_folder, known={}, workers=2))
            base = f"/datasets/{ram_dataset.id}"
            ram_floor = filesystem_floor(ram_dir / "floor", count)
            ram_first, ram_again = rename("1girl", "1woman"), rename("1woman", "1girl")
            rows.append(("RAM disk (/dev/shm): bare temp files, sync, renames", f"{ram_floor:.2f}", "s", "", "—"))
            rows.append(("RAM disk: rename in every caption, first time (with backups)", f"{ram_first:.2f}", "s",
                         f"{count:,} files", "< 2 s"))
            rows.append(("RAM disk: rename in every caption, again", f"{ram_again:.2f}", "s", f"{count:,} files", "< 2 s"))

    print(f"\nDatasets bench: {count:,} JPEGs of {size[0]}×{size[1]} px, 16 tags per caption, SQLite, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})\n")
    print("| what | value | unit | comparison | target |")
    print("| --- | ---: | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
