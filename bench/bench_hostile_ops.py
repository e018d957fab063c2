"""Hostile attempts against a real `tessera up` (issue 9's accounts, redirects, webhooks, disk and process
items), counted per kind: attempts made, refused (the site held), lost (the site did not: a visitor left
the site, a revoked cookie worked, the owner was locked out, data changed, a process outlived Tessera).

Kinds:
- redirect targets: every hostile `next` of tests/redirect_helpers.py, at login and when logged in;
- webhook POSTs without the secret: forged deliveries while Replicate's secret endpoint fails and after;
  "secret fetches" is how often Tessera asked Replicate for the secret (one per failure window is right);
- password guesses: 20 from 20 addresses and 200 from one, then the owner from a known browser;
  "checked" is how many guesses had their password checked at all;
- revoked cookies: session and remember cookies replayed after logout, password change and
  "log out everywhere";
- full disk (root only: a small tmpfs over the data folder's uploads and canvases): uploads and canvas
  imports on a full disk, the canvas compared before/after;
- stopping during a job: Ctrl+C, SIGTERM and SIGKILL of `tessera up` with an RQ work-horse running.

Run: python bench/bench_hostile_ops.py [--no-processes]   (about 2-3 minutes; --no-processes: ~1)
"""
from __future__ import annotations

import argparse
import errno
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from PIL import Image

from common import PASSWORD, ROOT, csrf_token, running_tessera  # noqa: E402  (bench/ is on sys.path)

from app.processes import descendants, is_alive  # noqa: E402
from tests.live import free_port, wait_until_healthy  # noqa: E402
from tests.redirect_helpers import HOSTILE  # noqa: E402

rows: list[tuple[str, int, int, int, str]] = []


def login(base, *, address="127.0.0.1", password=PASSWORD, client=None, next_url=None, remember=False):
    client = client or httpx.Client(base_url=base, timeout=30)
    token = csrf_token(client.get("/login").text)
    data = {"username": "bench", "password": password, "csrf_token": token, **({"remember": "on"} if remember else {})}
    params = {"next": next_url} if next_url is not None else None
    response = client.post("/login", data=data, params=params, headers={"X-Forwarded-For": address})
    return client, response


def redirects(base):
    refused = lost = 0
    for target in HOSTILE:
        client, response = login(base, next_url=target)
        again = client.get("/login", params={"next": target})
        for answer in (response, again):
            if answer.headers.get("location") == "/":
                refused += 1
            else:
                lost += 1
    rows.append(("redirect targets", 2 * len(HOSTILE), refused, lost, "Location stays /"))


def webhooks(base, fake):
    fake.reset()
    body = b'{"id": "p1", "status": "processing"}'
    refused = 0

    def forged():
        headers = {"webhook-id": f"msg_{uuid.uuid4().hex}", "webhook-timestamp": str(int(time.time())),
                   "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"}
        return httpx.post(f"{base}/webhooks/replicate", content=body, headers=headers, timeout=30).status_code

    fake.fail_next(503, times=10_000, path_prefix="/v1/webhooks/")
    codes = [forged() for _ in range(50)]
    fetches = len(fake.requests_to("GET", "/v1/webhooks/default/secret"))
    fake.reset()
    # The remembered failure lasts a minute; the 50 after it were refused without asking again.
    codes += [httpx.post(f"{base}/webhooks/replicate", content=body, timeout=30).status_code for _ in range(20)]
    refused = sum(code >= 400 for code in codes)
    fetches += len(fake.requests_to("GET", "/v1/webhooks/default/secret"))
    rows.append(("webhook POSTs without the secret", len(codes), refused, len(codes) - refused,
                 f"requests to Replicate for the secret: {fetches} (one fetch and its retry)"))


def guesses(base):
    owner, first = login(base, address="192.0.2.1")  # the owner's browser becomes known
    owner.post("/logout", headers={"X-CSRFToken": csrf_token(owner.get("/").text)})
    codes = [login(base, address=f"203.0.113.{n}", password=f"guess {n}")[1].status_code for n in range(20)]
    one = httpx.Client(base_url=base, timeout=30)
    codes += [login(base, address="198.51.100.1", password=f"g{n}", client=one)[1].status_code for n in range(200)]
    checked = codes.count(401)
    _client, back = login(base, address="198.51.100.200", client=owner)
    locked_out = int(back.status_code != 302)
    rows.append(("password guesses", len(codes), len(codes), locked_out,
                 f"checked {checked} of {len(codes)}; owner on a known browser: {back.status_code}"))


def revoked_cookies(base):
    attempts = lost = 0
    for how in ("logout", "password change", "log out everywhere"):
        client, _ = login(base, remember=True)
        cookies = {name: client.cookies.get(name) for name in ("session", "remember_token")}
        token = csrf_token(client.get("/").text)
        if how == "logout":
            client.post("/logout", headers={"X-CSRFToken": token})
        elif how == "password change":
            new = PASSWORD + "!"
            client.post("/account/password", headers={"X-CSRFToken": token},
                        data={"current_password": PASSWORD, "new_password": new, "new_confirm": new})
            client.post("/account/password", headers={"X-CSRFToken": csrf_token(client.get("/").text)},
                        data={"current_password": new, "new_password": PASSWORD, "new_confirm": PASSWORD})
        else:
            client.post("/account/logout-everywhere", headers={"X-CSRFToken": token})
        for name, value in cookies.items():
            attempts += 1
            thief = httpx.Client(base_url=base, timeout=30, cookies={name: value})
            lost += int(thief.get("/").status_code == 200)
    rows.append(("revoked cookies replayed", attempts, attempts - lost, lost, "after logout, password, everywhere"))


def full_disk(base, data_dir):
    if os.geteuid() != 0:
        rows.append(("full disk", 0, 0, 0, "skipped: needs root to mount a small tmpfs"))
        return
    client, _ = login(base)
    token = csrf_token(client.get("/").text)
    headers = {"X-CSRFToken": token}
    created = client.post("/canvas/", data={"name": "kept"}, headers=headers)
    canvas = created.headers["location"].rstrip("/").rsplit("/", 1)[1]
    png = io.BytesIO()
    Image.new("RGBA", (256, 256), (200, 30, 30, 255)).save(png, "PNG")
    client.post(f"/canvas/{canvas}/import", headers={**headers, "Accept": "application/json"},
                data={"x": 0, "y": 0, "w": 256, "h": 256}, files={"image": ("a.png", png.getvalue(), "image/png")})
    before = client.get(f"/canvas/{canvas}/export.png").content
    mounts = []
    for sub in ("canvases", "uploads"):
        path = Path(data_dir) / sub
        path.mkdir(exist_ok=True)
        if sub == "canvases":  # keep what is there: copy it onto the small disk
            keep = Path(tempfile.mkdtemp()) / sub
            subprocess.run(["cp", "-a", str(path), str(keep)], check=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)]).returncode != 0:
            rows.append(("full disk", 0, 0, 0, "skipped: mount not permitted"))
            return
        mounts.append(path)
        if sub == "canvases":
            subprocess.run(["cp", "-a", f"{keep}/.", str(path)], check=True)
        fd = os.open(path / ".filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
    try:
        big = io.BytesIO()
        Image.effect_noise((512, 512), 64).convert("RGB").save(big, "PNG")
        codes, said = [], 0
        for _ in range(5):
            answer = client.post(f"/canvas/{canvas}/import", headers={**headers, "Accept": "application/json"},
                                 data={"x": 0, "y": 0, "w": 512, "h": 512},
                                 files={"image": ("b.png", big.getvalue(), "image/png")})
            codes.append(answer.status_code)
            said += "disk is full" in answer.text
            answer = client.post("/generate", headers={**headers, "HX-Request": "true"},
                                 data={"model": "black-forest-labs/flux-dev", "prompt": "p"},
                                 files={"image": ("b.png", big.getvalue(), "image/png")})
            codes.append(answer.status_code)
            said += "disk is full" in answer.text
        lost = int(client.get(f"/canvas/{canvas}/export.png").content != before)
        rows.append(("writes on a full disk", len(codes), sum(c == 507 for c in codes), lost,
                     f"said 'the disk is full': {said}/{len(codes)}"))
    finally:
        for path in mounts:
            subprocess.run(["umount", "-l", str(path)])


def _horse_running(pid: int) -> bool:
    """An RQ work-horse: a process forked by a worker into a process group of its own."""
    for worker in descendants(pid):
        try:
            if b"app.cli\0worker" not in Path(f"/proc/{worker}/cmdline").read_bytes():
                continue
            if any(os.getpgid(child) == child for child in descendants(worker) if is_alive(child)):
                return True
        except OSError:
            continue
    return False


def stopping_during_a_job(env):
    from redis import Redis
    from rq import Queue

    attempts = left_total = 0
    for how in ("Ctrl+C", "SIGTERM", "SIGKILL"):
        with tempfile.TemporaryDirectory(prefix="tessera-stop-") as tmp:
            run_env = {**env, "TESSERA_DATA_DIR": tmp, "TESSERA_STOP_GRACE_SECONDS": "2"}
            port = free_port()
            up = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "1",
                                   "--web-workers", "1"], env=run_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
            wait_until_healthy(f"http://127.0.0.1:{port}", up)
            redis = Redis(unix_socket_path=f"{tmp}/run/redis.sock")
            Queue(run_env.get("TESSERA_QUEUE", "tessera"), connection=redis).enqueue("time.sleep", 600)
            deadline = time.monotonic() + 30
            while not _horse_running(up.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            tree = descendants(up.pid)
            {"Ctrl+C": lambda: os.killpg(up.pid, signal.SIGINT), "SIGTERM": lambda: up.send_signal(signal.SIGTERM),
             "SIGKILL": up.kill}[how]()
            up.wait(30)
            deadline = time.monotonic() + 15
            while any(is_alive(p) for p in tree) and time.monotonic() < deadline:
                time.sleep(0.1)
            left = [p for p in tree if is_alive(p)]
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            attempts += 1
            left_total += len(left)
    rows.append(("stopping during a job", attempts, attempts - bool(left_total), left_total,
                 "Ctrl+C, SIGTERM, SIGKILL; processes left"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-processes", action="store_true", help="skip the three stop-during-a-job runs")
    args = parser.parse_args()
    extra = {"TESSERA_PROXY_FIX": "x_for=1", "TESSERA_PUBLIC_URL": "https://tessera.example.com"}
    with running_tessera(extra_env=extra) as (base, fake, env):
        redirects(base)
        webhooks(base, fake)
        revoked_cookies(base)
        full_disk(base, env["TESSERA_DATA_DIR"])
        guesses(base)  # last: afterwards new browsers must wait to log in as "bench"
    if not args.no_processes:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
        stopping_during_a_job(env)
    print(f"| {'kind':34} | attempts | refused | lost | note")
    print(f"| {'-' * 34} | -------- | ------- | ---- | ----")
    for kind, attempts, refused, lost, note in rows:
        print(f"| {kind:34} | {attempts:8} | {refused:7} | {lost:4} | {note}")
    return 0 if all(lost == 0 for *_x, lost, _n in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
