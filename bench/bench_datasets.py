"""Datasets at scale: 10,000 small images with captions (or 100,000 with --large), side by side in one run.

    python bench/bench_datasets.py [--images 10000]
    python bench/bench_datasets.py --large          # 100,000 images of 256×256 (several minutes)
    python bench/bench_datasets.py --tag-list-rows 1000000 --only-tag-list

Builds its own dataset in a temporary folder (with its own SQLite database), then measures scanning
and indexing, thumbnails (the job vs a plain Pillow loop over the same files; not with --large),
grid and filtered page latency through the real routes, and a tag rename across every caption
against the bare-filesystem floor measured in the same run. The routes run in a separate "web"
process (spawned, like a gunicorn worker) whose peak RSS is reported. Prints a markdown table.
With --tag-list-rows, also a TESSERA_TAG_LISTS list of that many rows: each measurement in a fresh
process (first process builds the shared cache; later ones open it), beside a plain parse of the
same CSV into Python objects (what loading it into memory per process costs).
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


def write_tag_list(path: Path, rows: int) -> None:
    """A tagcomplete CSV shaped like Danbooru's: 1–3 words per tag, Zipf-like counts, aliases on 10%."""
    rng = random.Random(7)
    syllables = ["ka", "ri", "to", "na", "mi", "su", "lo", "ng", "ha", "ir", "sm", "ile", "bl", "ue", "ey", "es", "ch"]
    with path.open("w", encoding="utf-8") as fh:
        for n in range(rows):
            words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 3))]
            name = "_".join(words) + f"_{n}"
            aliases = f'"{name}_alt,{name}_other"' if n % 10 == 0 else ""
            fh.write(f"{name},{rng.choice([0, 0, 0, 1, 3, 4, 5])},{10_000_000 // (n + 1)},{aliases}\n")


_TAG_LIST_PROBE = """
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
mode, csv_path, cache_dir = sys.argv[1:4]
queries = ["hai", "smi", "a", "k", "ri to", "ng_ha", "zzz", "12345", "long hair", "q"]
from app.datasets.taglists import TagListCache  # imported first: the app's own import is not the list's cost
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
if mode == "plain":
    import csv
    rows = [(row[0], row[1:]) for row in csv.reader(open(csv_path, encoding="utf-8"))]
    by_key = {{name.replace("_", " ").casefold(): rest for name, rest in rows}}
    first = time.perf_counter() - start
    out = {{"first": first, "queries": []}}
else:
    cache = TagListCache([csv_path], Path(cache_dir))
    answered_at = None
    index = cache.index()
    if index is None:
        answered_at = time.perf_counter() - start  # the request answers now, from the dataset's tags
        index = cache.wait()
    index.suggest("hai", {{}}, 12)
    first = time.perf_counter() - start
    timings = []
    for q in queries:
        t = time.perf_counter(); index.suggest(q, {{}}, 12); timings.append((time.perf_counter() - t) * 1000)
    out = {{"first": first, "answered": answered_at, "queries": timings}}
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
print(json.dumps(out))
"""


def tag_list_bench(rows: int, workdir: Path) -> None:
    import json
    import subprocess

    csv_path, cache_dir = workdir / "tags.csv", workdir / "cache"
    print(f"Writing a {rows:,}-row tag list …", file=sys.stderr)
    write_tag_list(csv_path, rows)
    probe = _TAG_LIST_PROBE.format(root=str(ROOT))

    def run(mode: str) -> dict:
        done = subprocess.run([sys.executable, "-c", probe, mode, str(csv_path), str(cache_dir)],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    plain = run("plain")
    first = run("cache")
    later = [run("cache") for _ in range(3)]
    queries = sorted(q for r in later for q in r["queries"])
    size_mb = csv_path.stat().st_size / 1e6
    print(f"\nTag list bench: {rows:,} rows ({size_mb:.0f} MB CSV), {os.cpu_count()} CPUs "
          f"(load average {os.getloadavg()[0]:.1f}); each line is a fresh process\n")
    print("| what | first answer | ready for list suggestions | peak RSS above the imported app | per-keystroke lookup |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| plain: parse the CSV into Python objects (per process) | {plain['first']:.1f} s | {plain['first']:.1f} s "
          f"| {plain['rss_mb']:.0f} MB | — |")
    print(f"| cache, first process ever (builds it in the background) | {first['answered'] * 1000:.0f} ms "
          f"(dataset tags) | {first['first']:.1f} s | {first['rss_mb']:.0f} MB | — |")
    print(f"| cache, every later process (opens the built file) | {later[0]['first'] * 1000:.0f} ms "
          f"| {max(r['first'] for r in later) * 1000:.0f} ms | {max(r['rss_mb'] for r in later):.0f} MB "
          f"| median {statistics.median(queries):.1f} ms, max {queries[-1]:.1f} ms over {len(queries)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--tag-list-rows", type=int, default=0, help="also measure a tag list of this many rows")
    parser.add_argument("--only-tag-list", action="store_true", help="skip the image measurements")
    parser.add_argument("--large", action="store_true", help="100,000 images of 256×256 (overrides --images)")
    args = parser.parse_args()
    if args.tag_list_rows:
        with tempfile.TemporaryDirectory(prefix="tessera-bench-taglist-") as tmp:
            tag_list_bench(args.tag_list_rows, Path(tmp))
    if args.only_tag_list:
        return
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
