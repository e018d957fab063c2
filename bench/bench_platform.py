"""Platform figures: submit → first Replicate request, and status polling under 50 concurrent pollers.

Run: python bench/bench_platform.py
"""
from __future__ import annotations

import re
import threading
import time

import httpx

from common import logged_in_client, median_ms, p95_ms, print_table, running_tessera

SUBMITS = 20
POLLERS = 50
POLL_SECONDS = 8.0


def submit_latency(client: httpx.Client, fake) -> list[float]:
    """Seconds from sending the form to the create request arriving at (fake) Replicate."""
    samples = []
    for _ in range(SUBMITS):
        seen = len(fake.requests)
        start = time.monotonic()
        response = client.post("/generate", data={"model": "black-forest-labs/flux-schnell", "prompt": "bench"})
        response.raise_for_status()
        deadline = start + 30
        while time.monotonic() < deadline:
            creates = [r for r in fake.requests[seen:] if r.method == "POST" and r.path.endswith("/predictions")]
            if creates:
                samples.append(creates[0].at - start)
                break
            time.sleep(0.002)
        else:
            raise RuntimeError("the job never reached Replicate")
        wait_for_end(client, re.search(r'id="job-([0-9a-f]+)"', response.text).group(1))
    return samples


def wait_for_end(client: httpx.Client, job_id: str) -> None:
    """The next sample must find the worker idle, or it would measure the queue."""
    deadline = time.monotonic() + 60
    while 'hx-trigger="every' in client.get(f"/jobs/{job_id}/status").text:
        if time.monotonic() > deadline:
            raise RuntimeError("job did not end")
        time.sleep(0.1)


def throughput(base: str, cookies, headers, path: str) -> float:
    """Requests per second that POLLERS concurrent keep-alive clients get from `path`.

    Each poller revalidates like a browser's HTTP cache does for HTMX's polling requests: it sends
    the last ETag back, and a 304 counts as an answer (the browser then uses its cached copy).
    """
    counts = [0] * POLLERS
    stop = threading.Event()

    def poll(index: int) -> None:
        etag = None
        with httpx.Client(base_url=base, cookies=cookies, headers=headers, timeout=30) as client:
            while not stop.is_set():
                response = client.get(path, headers={"If-None-Match": etag} if etag else None)
                if response.status_code in (200, 304):
                    counts[index] += 1
                    etag = response.headers.get("ETag", etag)

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(POLLERS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # warm-up: connections open, caches filled
    before, start = sum(counts), time.monotonic()
    time.sleep(POLL_SECONDS)
    done, elapsed = sum(counts) - before, time.monotonic() - start
    stop.set()
    for thread in threads:
        thread.join()
    return done / elapsed


def main() -> None:
    with running_tessera(workers=1, web_workers=2) as (base, fake, _env):
        client = logged_in_client(base)
        fake.polls_per_state = 1
        latencies = submit_latency(client, fake)

        fake.polls_per_state = 10**9  # keep one job running while it is polled
        partial = client.post("/generate", data={"model": "black-forest-labs/flux-schnell", "prompt": "poll me"}).text
        job_id = re.search(r'id="job-([0-9a-f]+)"', partial).group(1)
        time.sleep(2)
        status_path = f"/jobs/{job_id}/status"
        assert "running" in client.get(status_path).text
        status_rps = throughput(base, client.cookies, client.headers, status_path)
        health_rps = throughput(base, client.cookies, client.headers, "/health")
        client.post(f"/jobs/{job_id}/cancel")

    print_table("Platform (tessera up: 2 gunicorn processes × 8 threads, 1 worker; 2 cores)", [
        ("form submit → create request at Replicate, median", f"{median_ms(latencies):.0f}", "ms",
         f"p95 {p95_ms(latencies):.0f} ms over {SUBMITS} submits", "—"),
        (f"job status partial, {POLLERS} concurrent pollers", f"{status_rps:.0f}", "req/s",
         f"/health on the same server: {health_rps:.0f} req/s", "≥ 0.8 of /health"),
        ("status partial ÷ trivial endpoint", f"{status_rps / health_rps:.2f}", "ratio", "", "≥ 0.80"),
    ])


if __name__ == "__main__":
    main()
