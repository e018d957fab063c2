"""Shared bench plumbing: a real `tessera up` against the fake Replicate, a logged-in HTTP client, tables."""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_replicate import FakeReplicate  # noqa: E402
from tests.live import free_port, wait_until_healthy  # noqa: E402

PASSWORD = "bench password 1"


@contextmanager
def running_tessera(*, workers: int = 1, web_workers: int = 2, extra_env: dict | None = None):
    """Yield (base_url, fake, env) for a `tessera up` with its own data folder and private Redis."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp, FakeReplicate() as fake:
        env = {**os.environ, "TESSERA_DATA_DIR": tmp, "REPLICATE_API_TOKEN": fake.token,
               "REPLICATE_API_BASE": fake.base_url, "TESSERA_DOWNLOAD_HOSTS": "127.0.0.1",
               "TESSERA_ALLOW_HTTP_DOWNLOADS": "1", **(extra_env or {})}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        subprocess.run([sys.executable, "-m", "app.cli", "user", "create", "bench"], input=PASSWORD + "\n",
                       text=True, env=env, check=True, capture_output=True, cwd=ROOT)
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port),
                                    "--workers", str(workers), "--web-workers", str(web_workers)],
                                   env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base, process)
            yield base, fake, env
        finally:
            process.send_signal(2)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def logged_in_client(base: str, username: str = "bench") -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    token = csrf_token(client.get("/login").text)
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"login failed: {response.status_code}")
    client.headers["X-CSRFToken"] = csrf_token(client.get("/").text)
    return client


def csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)] * 1000


def print_table(title: str, rows: list[tuple],
                header: tuple[str, ...] = ("what", "value", "unit", "compared with", "target")) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
