"""Serving images behind nginx: nginx streaming the file (X-Accel-Redirect) against the app streaming
it itself, through the same nginx over https, with the deploy/ config. Builds its own data folder;
needs /usr/sbin/nginx and openssl.

Run: python bench/bench_deploy.py
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from common import median_ms, p95_ms, print_table

from app import create_app
from app.auth.accounts import create_user
from app.extensions import db
from app.gallery import Generation
from app.redis_server import PrivateRedis
from tests.test_nginx import make_certificate, nginx_in_front_of_gunicorn, proxy_settings

FILE_MB = 16
SEQUENTIAL = 30
CLIENTS, PER_CLIENT = 8, 8
PASSWORD = "bench password 1"


def session_processes(leader: int) -> list[Path]:
    """/proc entries of a process started in a session of its own, and of all its children."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[3]) == leader:
                found.append(entry)
        except OSError:
            continue
    return found


def cpu_seconds(leader: int) -> float:
    """User + system CPU time of a process and its children so far."""
    ticks = 0
    for entry in session_processes(leader):
        fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def bytes_written_to_files(leader: int) -> int:
    """What a process and its children wrote through the file system (nginx spooling responses)."""
    total = 0
    for entry in session_processes(leader):
        counters = dict(line.split(": ") for line in (entry / "io").read_text().splitlines())
        total += int(counters["write_bytes"])
    return total


def measure(stack, url: str, size: int) -> dict[str, float]:
    with stack.client() as browser:
        assert stack.log_in(browser, "bench", PASSWORD).status_code == 302
        assert len(browser.get(url).content) == size  # warm-up, and the right file
        cpu_before, spooled_before = cpu_seconds(stack.app_pid), bytes_written_to_files(stack.nginx_pid)
        latencies = []
        for _ in range(SEQUENTIAL):
            start = time.perf_counter()
            browser.get(url).raise_for_status()
            latencies.append(time.perf_counter() - start)
        cookies = dict(browser.cookies)

    def download_many() -> None:
        with stack.client() as client:
            client.cookies.update(cookies)
            for _ in range(PER_CLIENT):
                client.get(url).raise_for_status()

    threads = [threading.Thread(target=download_many) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    downloads = SEQUENTIAL + CLIENTS * PER_CLIENT
    return {"median": median_ms(latencies), "p95": p95_ms(latencies),
            "throughput": CLIENTS * PER_CLIENT * size / 1e6 / elapsed,
            "cpu_per_gb": (cpu_seconds(stack.app_pid) - cpu_before) / (downloads * size / 1e9),
            "spooled_mb": (bytes_written_to_files(stack.nginx_pid) - spooled_before) / downloads / 1e6}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-deploy-") as tmp:
        folder = Path(tmp)
        data_dir = folder / "data"
        with PrivateRedis(folder / "redis", persist=False) as redis:
            os.environ.update(TESSERA_DATA_DIR=str(data_dir), REDIS_URL=redis.url)
            os.environ.pop("DATABASE_URL", None)
            app = create_app()
            with app.app_context():
                db.create_all()
                user = create_user("bench", PASSWORD)
                relpath = "outputs/bench.png"
                (data_dir / "outputs").mkdir(parents=True)
                (data_dir / relpath).write_bytes(os.urandom(FILE_MB * 1024 * 1024))
                generation = Generation(user_id=user.id, model_ref="m/n", path=relpath, width=1, height=1)
                db.session.add(generation)
                db.session.commit()
                url = f"/generations/{generation.id}.png"
                db.engine.dispose()
            certificate = make_certificate(folder)
            results = {}
            for how, accel in (("nginx streams (X-Accel-Redirect)", proxy_settings()["TESSERA_ACCEL_REDIRECT_PREFIX"]),
                               ("the app streams", "")):
                env = {**os.environ, **proxy_settings(), "TESSERA_ACCEL_REDIRECT_PREFIX": accel}
                run_folder = folder / f"run-{len(results)}"
                run_folder.mkdir()
                with nginx_in_front_of_gunicorn(run_folder, data_dir, env, certificate) as stack:
                    results[how] = measure(stack, url, FILE_MB * 1024 * 1024)
    nginx, app_itself = results["nginx streams (X-Accel-Redirect)"], results["the app streams"]
    print_table(f"A {FILE_MB} MB image through nginx over https ({CLIENTS} clients × {PER_CLIENT} for throughput)", [
        ("download time, median", f"{nginx['median']:.0f}", "ms", f"app streams: {app_itself['median']:.0f} ms",
         "not slower"),
        ("download time, p95", f"{nginx['p95']:.0f}", "ms", f"app streams: {app_itself['p95']:.0f} ms", "not slower"),
        ("throughput, concurrent", f"{nginx['throughput']:.0f}", "MB/s",
         f"app streams: {app_itself['throughput']:.0f} MB/s", "no lower"),
        ("app (gunicorn) CPU per GB served", f"{nginx['cpu_per_gb']:.2f}", "s/GB",
         f"app streams: {app_itself['cpu_per_gb']:.2f} s/GB", "lower: the app only checks access"),
        ("nginx writes to its temp files per download", f"{nginx['spooled_mb']:.1f}", "MB",
         f"app streams: {app_itself['spooled_mb']:.1f} MB", "0: no copy of the file is spooled"),
    ])


if __name__ == "__main__":
    main()
