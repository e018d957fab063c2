"""Datasets at scale: 10,000 small images with captions (or 100,000 with --large), side by side in one run.

    python bench/bench_datasets.py [--images 10000]
    python bench/bench_datasets.py --large          # 100,000 images of 256×256 (several minutes)
    python bench/bench_datasets.py --tag-list-rows 1000000 --only-tag-list

Builds its own dataset in a temporary folder (with its own SQLite database and private Redis),
then measures scanning and indexing, thumbnails (the job vs a plain Pillow loop over the same
files; not with --large), grid, filtered and dataset page latency through the real routes, and a
tag rename across every caption against the bare-filesystem floor measured in the same run. The
routes run in a separate "web" process (spawned, like a gunicorn worker); a dataset-wide rename
is a job, run by a real `tessera worker` process (which forks a work-horse per job, as in
production), and is timed as the user waits for it: from the POST to the job's end. Each rename
starts once no job is queued or running (the check and thumbnail jobs opening the dataset queued;
the wait is reported apart), after what they left dirty is flushed, and is compared with the
floor measured right before it on the same disk. Beside them: one syncfs against an fsync of each
staged file on a thread pool. Peak RSS and CPU time of both processes are reported, and the
check's own run time and work-horse peak. Prints one markdown table (wall and CPU time side by
side: on a busy machine the CPU time is the steadier number).
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
from datetime import timedelta, timezone
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


def timed_cpu(fn):
    """((wall s, CPU s of this process), result) of `fn()`."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return (time.perf_counter() - start, time.process_time() - cpu), result


def median_ms(fn, runs: int = 15) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process) of `fn()` over `runs` calls after a warm-up."""
    fn()  # warm caches, as a user's second request would be
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's peak RSS (VmHWM) in MB. Not ru_maxrss: Linux carries that over fork and exec,
    so a process started by this (large) bench would report the bench's own peak."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return 0.0


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


def stage_files(folder: Path, count: int) -> list[str]:
    """`count` tiny temp files in `folder` (1,000 per subfolder, like a dataset), not yet synced."""
    paths = []
    for n in range(count):
        sub = folder / f"part{n // 1000:02d}"
        if n % 1000 == 0:
            sub.mkdir(parents=True)
        path = str(sub / f".{n}.tmp")
        with open(path, "wb") as fh:
            fh.write(b"tok, 1girl, tag 1, tag 2")
        paths.append(path)
    return paths


def compare_syncs(folder: Path, count: int) -> dict[str, float]:
    """Seconds to make `count` freshly staged files durable, side by side on this disk: what is
    dirty when the queue goes idle (os.sync, which any syncfs would also pay for), then, each from
    a clean page cache, one syncfs (what bulkwrite does) and an fsync of each file on 16 threads."""
    import ctypes
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    os.sync()
    result = {"dirty": time.perf_counter() - start}
    libc = ctypes.CDLL(None, use_errno=True)

    def fsync(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def syncfs(paths: list[str]) -> None:
        fd = os.open(paths[0], os.O_RDONLY)
        try:
            assert libc.syncfs(fd) == 0
        finally:
            os.close(fd)

    def pooled(paths: list[str]) -> None:
        # 1,000 at a time: ThreadPoolExecutor.map makes every future up front (100,000 futures
        # were ~165 MB of the web process's peak RSS, which this bench also reports).
        with ThreadPoolExecutor(16) as pool:
            for start in range(0, len(paths), 1000):
                list(pool.map(fsync, paths[start:start + 1000]))

    for name, method in (("syncfs", syncfs), ("fsync_pool", pooled)):
        os.sync()
        paths = stage_files(folder / name, count)
        start = time.perf_counter()
        method(paths)
        result[name] = time.perf_counter() - start
        shutil.rmtree(folder / name)
    os.sync()
    return result


def wait_for_idle() -> float:
    """Seconds until no job is queued or running (the check and thumbnail jobs opening the
    dataset queued), so a timed rename has the worker and the disk to itself."""
    from app.extensions import db
    from app.models import Job

    start = time.perf_counter()
    while True:
        db.session.expire_all()
        if not db.session.scalar(db.select(db.func.count()).select_from(Job).where(Job.status.not_in(Job.ENDED))):
            return time.perf_counter() - start
        time.sleep(0.2)


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


def wait_for_job(kind: str, since: set[str]):
    """The job of `kind` queued after the ids in `since`, once it has ended (polls its row)."""
    from app.extensions import db
    from app.models import Job

    while True:
        db.session.expire_all()
        jobs = [job for job in db.session.scalars(db.select(Job).where(Job.kind == kind)) if job.id not in since]
        if jobs and jobs[0].ended:
            assert jobs[0].status == Job.SUCCEEDED, (jobs[0].status, jobs[0].error)
            return jobs[0]
        time.sleep(0.02)


def job_ids(kind: str) -> set[str]:
    from app.extensions import db
    from app.models import Job

    return set(db.session.scalars(db.select(Job.id).where(Job.kind == kind)))


def post_and_wait(client, url: str, data: dict, kind: str) -> tuple[float, object]:
    """Seconds from the POST until the edit is done (the job ended, when one was queued), and the job or None."""
    before = job_ids(kind)
    start = time.perf_counter()
    response = client.post(url, data=data)
    assert response.status_code == 303, response.status_code
    answered = time.perf_counter() - start
    job = wait_for_job(kind, before) if job_ids(kind) - before else None
    if job is not None:
        job.answered_s = answered  # how long the POST itself took (the rest: queue wait + the job)
    return time.perf_counter() - start, job


def web_process(env: dict, dataset_id: int, login: str, count: int, workdir: Path, out) -> None:
    """The web side, in its own process: grid, filter and page latency, the renames (each after
    the queue went idle, against a floor measured right before it), peak RSS."""
    os.environ.update(env)
    from app import create_app

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = login  # User.get_id(): the account and its session generation
        session["_fresh"] = True

    def get(url: str) -> None:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)

    base = f"/datasets/{dataset_id}"
    deep = (count * 9 // 10) // 60 * 60
    pages = [
        ("Grid rows, first page (60 images)", f"{base}/grid?offset=0", "< 50 ms"),
        (f"Grid rows, deep page (offset {deep:,})", f"{base}/grid?offset={deep}", "< 50 ms"),
        ("Filtered grid: `tag 1 AND NOT tag 2`", f"{base}/grid?q=tag+1+AND+NOT+tag+2", "< 50 ms"),
        ("Filtered grid: `(smile OR hat) -outdoors` + text search", f"{base}/grid?q=(smile+OR+hat)+-outdoors&search=tag+3",
         "< 50 ms"),
        ("Dataset page (grid, match count, tag panel, history)", f"{base}?sort=name", "—"),
        ("Dataset page filtered: `tag 1 AND NOT tag 2`", f"{base}?q=tag+1+AND+NOT+tag+2", "—"),
        ("Tag suggestions for `lon` (combobox)", f"{base}/complete?tag=lon", "—"),
    ]
    rows = []
    for what, url, target in pages:
        wall, cpu = median_ms(lambda: get(url))
        rows.append((what, f"{wall:.1f}", f"{cpu:.1f}", "ms median", "", target))

    renames = []
    with app.app_context():
        for number, (old, new) in enumerate([("1girl", "1woman"), ("1woman", "1girl")], 1):
            # Fair and clear: the jobs opening the dataset queued (check, thumbnails) end first, what
            # they left dirty is flushed (timed, it is what a syncfs would pay for), and the floor
            # is measured right before the rename on the same quiet disk.
            waited = wait_for_idle()
            syncs = compare_syncs(workdir / f"syncs-{number}", count) if number == 1 else None
            start = time.perf_counter()
            os.sync()
            flushed = time.perf_counter() - start
            floor = filesystem_floor(workdir / f"floor-{number}", count)
            shutil.rmtree(workdir / f"floor-{number}")
            os.sync()
            cpu = cpu_seconds(resource.getrusage(resource.RUSAGE_SELF))
            total, job = post_and_wait(client, f"{base}/bulk", {"action": "rename", "old": old, "new": new},
                                       "datasets.bulk")
            renames.append({"waited": waited, "flushed": flushed, "floor": floor, "total": total, "syncs": syncs,
                            "web_cpu": cpu_seconds(resource.getrusage(resource.RUSAGE_SELF)) - cpu,
                            "job": None if job is None else (job.answered_s, (job.started_at - job.created_at).total_seconds(),
                                                             (job.finished_at - job.started_at).total_seconds())})
    out.put({"rows": rows, "renames": renames, "peak_mb": peak_rss_mb()})


class WorkerProcess:
    """A real `tessera worker` (RQ worker + work-horse per job); a thread samples the peak RSS
    (VmHWM) of it and of each work-horse every 50 ms; CPU time is read at exit (wait4)."""

    def __init__(self, env: dict) -> None:
        import subprocess
        import threading

        self.process = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env={**os.environ, **env},
                                        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.peak_mb = 0.0
        self.horses: dict[int, tuple[float, float]] = {}  # pid -> (first seen, time.time(); peak MB)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        from app.processes import descendants

        while not self._stop.wait(0.05):
            for pid in {self.process.pid, *descendants(self.process.pid)}:
                peak = peak_rss_mb(pid)
                self.peak_mb = max(self.peak_mb, peak)
                first_seen, before = self.horses.get(pid, (time.time(), 0.0))
                self.horses[pid] = (first_seen, max(before, peak))

    def job_peak_mb(self, job) -> float | None:
        """The peak RSS of the work-horse that ran `job` (the one first seen while it ran), or None."""
        if job.started_at is None or job.finished_at is None:
            return None
        start = job.started_at.replace(tzinfo=timezone.utc).timestamp() - 0.5
        end = job.finished_at.replace(tzinfo=timezone.utc).timestamp()
        peaks = [peak for pid, (seen, peak) in self.horses.items() if pid != self.process.pid and start <= seen <= end]
        return max(peaks) if peaks else None

    def stop(self) -> resource.struct_rusage:
        """Stop it (warm shutdown) and return its resource usage, work-horses included (wait4)."""
        import signal

        self._stop.set()
        self._sampler.join()
        self.process.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = 0
        return usage


def phases(timings: tuple | None) -> str:
    """"; POST answered in a s, queued b s, the job ran c s" for (answered, queued, ran), or ""."""
    if not timings:
        return ""
    answered, queued, ran = timings
    return f"; POST answered in {answered:.2f} s, queued {queued:.2f} s, the job ran {ran:.2f} s"


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
    from app.redis_server import PrivateRedis

    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    folder = Path(app.config["DATASET_ROOTS"][0]) / "bench"
    print(f"Building {count:,} images with captions in {folder} …", file=sys.stderr)
    build_dataset(folder, count, size, processes=2 if large else 1)
    rows = []

    with PrivateRedis(workdir / "data" / "run", persist=False), app.app_context():
        db.create_all()
        user = User(username="bench")
        user.set_password("bench password")
        db.session.add(user)
        db.session.commit()
        dataset = Dataset(user_id=user.id, name="bench", root=str(folder), settings={})
        db.session.add(dataset)
        db.session.commit()

        (scan_s, scan_cpu), result = timed_cpu(lambda: scan_folder(folder, known={}, workers=2))
        (index_s, index_cpu), _ = timed_cpu(lambda: index.apply_scan(dataset, result))
        rows.append(("Scan (read, hash, pHash) of new images", f"{scan_s:.1f}", f"{scan_cpu:.1f}", "s",
                     f"{count / scan_s:,.0f} images/s", "—"))
        rows.append(("Index into the database (images + tags)", f"{index_s:.2f}", f"{index_cpu:.2f}", "s",
                     f"{db.session.scalar(db.select(db.func.count()).select_from(index.TAGS)):,} tag rows", "—"))
        (rescan_s, rescan_cpu), again = timed_cpu(lambda: scan_folder(folder, known=index.known_state(dataset.id),
                                                                      workers=2))
        assert not again.added and not again.changed and not again.captions_changed
        rows.append(("Rescan, nothing changed", f"{rescan_s:.2f}", f"{rescan_cpu:.2f}", "s", "walk + stat only", "—"))

        if not large:
            files = [folder / row.relpath for row in db.session.scalars(db.select(DatasetImage).order_by(DatasetImage.relpath))]
            plain_s, _ = timed(lambda: plain_pillow_thumbnails(files, workdir / "plain-thumbs"))
            job = Job(id="bench-thumbs", user_id=user.id, kind="datasets.thumbs", task="app.datasets.tasks.run_thumbnails",
                      params={"dataset_id": dataset.id}, result={})
            db.session.add(job)
            db.session.commit()
            job_s, _ = timed(lambda: run_thumbnails(job.id))
            rows.append(("Thumbnails: plain Pillow loop (open, thumbnail, save WebP)", f"{len(files) / plain_s:,.0f}",
                         "", "images/s", f"{plain_s:.1f} s", "—"))
            rows.append(("Thumbnails: the job (draft decode, threads, dedupe by hash)", f"{len(files) / job_s:,.0f}",
                         "", "images/s", f"{plain_s / job_s:.1f}× plain Pillow", "faster than plain"))

        # Opening the dataset's page queues a check for changes on disk (a scan older than 30 s):
        # make it due, so the run includes the check every user's first visit costs.
        dataset.scanned_at = dataset.scanned_at - timedelta(hours=1)
        db.session.commit()
        env = {key: os.environ[key] for key in ("TESSERA_DATA_DIR", "TESSERA_DATASET_ROOTS")}
        worker = WorkerProcess(env)
        queue = multiprocessing.get_context("spawn").Queue()
        web = multiprocessing.get_context("spawn").Process(target=web_process,
                                                           args=(env, dataset.id, user.get_id(), count, workdir, queue))
        web.start()
        measured = queue.get()
        web.join()
        rows += measured["rows"]
        changed = sum(1 for path in folder.rglob("*.txt") if "1girl" in path.read_text())
        assert changed == count, changed
        syncs = measured["renames"][0]["syncs"]
        rows.append((f"Sync {count:,} staged captions: one syncfs (what a bulk edit does)", f"{syncs['syncfs']:.2f}", "",
                     "s", f"fsync of each on 16 threads: {syncs['fsync_pool']:.2f} s (each from a clean page cache)", "—"))
        for number, (what, rename) in enumerate(zip(("first time (also backs up originals)", "again"),
                                                     measured["renames"]), 1):
            rows.append((f"Before rename {number}: wait until no job is queued or running", f"{rename['waited']:.2f}", "",
                         "s", f"then flushing what they left dirty took {rename['flushed']:.2f} s"
                         + (f" (before the syncs above: {syncs['dirty']:.2f} s)" if number == 1 else ""), "—"))
            rows.append((f"Bare filesystem floor, measured right before rename {number}", f"{rename['floor']:.2f}", "", "s",
                         "that many temp files, one sync, renames", "—"))
            how = "POST → job end" if rename["job"] else "the request"
            ran = f"; the job ran {rename['job'][2] / rename['floor']:.2f}× the floor" if rename["job"] else ""
            rows.append((f"Rename a tag in every caption, {what} ({how})", f"{rename['total']:.2f}", "", "s",
                         f"**{rename['total'] / rename['floor']:.2f}× the floor**" + phases(rename["job"]) + ran,
                         "≤ 1.3× floor"))
        rows.append(("Web process: peak RSS (routes above, both renames)", f"{measured['peak_mb']:.0f}", "", "MB",
                     f"CPU {sum(r['web_cpu'] for r in measured['renames']):.2f} s for the two renames "
                     "(POST + polling the job)", "< 400 MB"))
        client = app.test_client()
        with client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True

        def rename(old: str, new: str) -> float:
            return post_and_wait(client, f"{base}/bulk", {"action": "rename", "old": old, "new": new}, "datasets.bulk")[0]

        base = f"/datasets/{dataset.id}"
        undo_batch = recent_batches(dataset.id, limit=1)[0]
        undo_s, _ = post_and_wait(client, f"{base}/history/{undo_batch.id}/undo", {}, "datasets.undo")
        rows.append(("Undo that rename (one batch)", f"{undo_s:.2f}", "", "s", f"{changed:,} files", "—"))

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
            rows.append(("RAM disk (/dev/shm): bare temp files, sync, renames", f"{ram_floor:.2f}", "", "s", "", "—"))
            rows.append(("RAM disk: rename in every caption, first time (with backups)", f"{ram_first:.2f}", "", "s",
                         f"{count:,} files", "< 2 s"))
            rows.append(("RAM disk: rename in every caption, again", f"{ram_again:.2f}", "", "s", f"{count:,} files",
                         "< 2 s"))
        usage = worker.stop()
        db.session.expire_all()
        for job in db.session.scalars(db.select(Job).order_by(Job.created_at)):  # what the worker did, in order
            ran = (job.finished_at - job.started_at).total_seconds() if job.finished_at and job.started_at else None
            print(f"job {job.kind:16} {job.status:9} queued {job.created_at:%H:%M:%S} ran {ran} s, "
                  f"work-horse peak {worker.job_peak_mb(job)} MB", file=sys.stderr)
        check = db.session.scalars(db.select(Job).where(Job.kind == "datasets.check").order_by(Job.created_at)).first()
        if check is not None and check.finished_at is not None:
            peak = worker.job_peak_mb(check)
            rows.append(("Check for changes on disk (`datasets.check`, queued by opening the dataset; nothing changed)",
                         f"{(check.finished_at - check.started_at).total_seconds():.2f}", "", "s",
                         f"its work-horse's peak RSS {peak:.0f} MB" if peak else "", "peak well under 400 MB"))
        rows.append(("Worker process: peak RSS (the worker or the work-horse of any job above)",
                     f"{worker.peak_mb:.0f}", "", "MB", f"CPU {cpu_seconds(usage):.2f} s for all its jobs", "< 400 MB"))

    print(f"\nDatasets bench: {count:,} JPEGs of {size[0]}×{size[1]} px, 16 tags per caption, SQLite, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})\n")
    print("| what | wall | CPU | unit | comparison | target |")
    print("| --- | ---: | ---: | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
