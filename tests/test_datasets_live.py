"""The security review's dataset cases, against a real `tessera up` (gunicorn workers with threads,
an RQ worker, a private Redis): hostile regexes, deep filters and simultaneous caption saves.

One server for the module: starting it costs seconds, and each test makes its own folder.
The tests assert behaviour only (stopped, said so, nothing written, the site answering meanwhile); how
long each took is measured side by side in bench/bench_hostile_data.py, not asserted here, where a
busy machine would make a wall-clock bound flaky.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.live import free_port, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "live test password 1"


def nested_not_or(depth: int) -> str:
    return "NOT (a OR " * depth + "a" + ")" * depth


class Live:
    def __init__(self, base: str, data_dir: Path, roots: Path) -> None:
        self.base, self.data_dir, self.roots = base, data_dir, roots

    def client(self, username: str = "ada") -> httpx.Client:
        # A fresh connection per request: gunicorn closes an idle keep-alive connection after 2 s,
        # and a POST sent on one as it closes reads "Server disconnected" (a browser would resend it).
        client = httpx.Client(base_url=self.base, timeout=60, limits=httpx.Limits(max_keepalive_connections=0))
        token = _csrf(client.get("/login").text)
        response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert response.status_code in (302, 303), response.text
        client.headers["X-CSRFToken"] = _csrf(client.get("/").text)
        return client

    def folder(self, username: str, name: str, captions: dict[str, str]) -> Path:
        folder = self.roots / username / name
        for number, (image, caption) in enumerate(captions.items()):
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64 + number, 48), (number * 30 % 256, 80, 160)).save(folder / image)
            (folder / image).with_suffix(".txt").write_text(caption, encoding="utf-8")
        return folder

    def open_dataset(self, client: httpx.Client, folder: Path) -> int:
        response = client.post("/datasets/", data={"folder": str(folder)})
        assert response.status_code == 303, response.text
        dataset_id = int(re.search(r"/datasets/(\d+)", response.headers["location"]).group(1))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the RQ worker scans it
            if self.query("SELECT scanned_at FROM dataset WHERE id = ?", dataset_id)[0][0]:
                return dataset_id
            time.sleep(0.2)
        raise AssertionError("the scan did not finish")

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.data_dir / "tessera.db", timeout=30) as connection:
            return connection.execute(sql, params).fetchall()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    data_dir, roots = tmp / "data", tmp / "roots"
    env = {**os.environ, "TESSERA_DATA_DIR": str(data_dir), "TESSERA_DATASET_ROOTS": str(roots / "{user}"),
           "REPLICATE_API_TOKEN": "", "PYTHONUNBUFFERED": "1"}
    for name in ("REDIS_URL", "DATABASE_URL"):
        env.pop(name, None)
    for username in ("ada", "bob"):
        subprocess.run([sys.executable, "-m", "app.cli", "user", "create", username], input=PASSWORD + "\n",
                       text=True, env=env, check=True, capture_output=True, cwd=ROOT)
    port = free_port()
    # Two web processes (each gunicorn's threads), like the review's deployment.
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "up", "--port", str(port), "--workers", "1",
                                "--web-workers", "2"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, timeout=90)
        yield Live(base, data_dir, roots)
    finally:
        process.send_signal(2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _health_while(base: str, action, *, interval: float = 0.1) -> tuple[object, int]:
    """Run `action()` in a thread; meanwhile ask for /health again and again, each answer required
    (200, within the probe's timeout). Returns (the action's result, how many /health answers came
    while it ran)."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", action()))
    thread.start()
    answered = 0
    with httpx.Client(timeout=10) as probe:
        time.sleep(0.2)  # let the hostile request reach its worker
        while thread.is_alive():
            probe.get(base + "/health").raise_for_status()
            answered += 1
            time.sleep(interval)
    thread.join()
    return outcome["result"], answered


def test_hostile_regex_gives_up_with_a_message_and_the_site_stays_up(live: Live) -> None:
    client = live.client()
    folder = live.folder("ada", "regex", {"a.png": "a" * 40 + "!", "b.png": "tok, 1girl"})
    dataset_id = live.open_dataset(client, folder)

    # The review's exact case: the regex package answers it (it needs no budget), with the right,
    # unchanged, result and no complaint.
    response, _ = _health_while(live.base, lambda: client.post(f"/datasets/{dataset_id}/bulk", data={
        "action": "replace", "find": "(a+)+$", "replace": "x", "regex": "1", "scope": "all"}))
    assert response.status_code == 303
    assert "backtracks too much" not in client.get(response.headers["location"]).text
    assert (folder / "a.txt").read_text() == "a" * 40 + "!"

    # Alternations it cannot optimise would backtrack for hours: the request ends (the client waits
    # 60 s at most), says it stopped, writes nothing, and /health (served by the same processes)
    # kept answering while it ran.
    for pattern in ("(a|a)+$", "(a|aa)+$", "(aa|a)+b", "(?:a|a)*$"):
        response, answered = _health_while(live.base, lambda: client.post(f"/datasets/{dataset_id}/bulk", data={
            "action": "replace", "find": pattern, "replace": "x", "regex": "1", "scope": "all"}))
        assert response.status_code == 303, pattern
        page = client.get(response.headers["location"]).text
        assert "backtracks too much" in page, pattern
        assert answered >= 1, pattern  # the budget (1 s of CPU) leaves time for /health to answer
    assert (folder / "a.txt").read_text() == "a" * 40 + "!" and (folder / "b.txt").read_text() == "tok, 1girl"


def test_deep_filters_are_refused_and_never_remembered(live: Live) -> None:
    client = live.client()
    folder = live.folder("ada", "filters", {"a.png": "tok, a", "b.png": "tok, b"})
    dataset_id = live.open_dataset(client, folder)
    deep = nested_not_or(150)

    page = client.get(f"/datasets/{dataset_id}", params={"q": deep})
    assert page.status_code == 400 and ("nests too deeply" in page.text or "more than 100 tags" in page.text)
    grid = client.get(f"/datasets/{dataset_id}/grid", params={"q": deep})
    assert grid.status_code == 400 and "Filter" in grid.text
    bulk = client.post(f"/datasets/{dataset_id}/bulk", data={"action": "add", "tags": "x", "scope": "filtered", "q": deep})
    assert bulk.status_code == 303
    assert re.search("nests too deeply|more than 100 tags", client.get(bulk.headers["location"]).text)
    assert (folder / "a.txt").read_text() == "tok, a"
    # Nothing of it was remembered: the dataset page and the editor open normally.
    assert client.get(f"/datasets/{dataset_id}").status_code == 200
    image_id = live.query("SELECT id FROM dataset_image WHERE dataset_id = ? AND relpath = 'a.png'", dataset_id)[0][0]
    assert client.get(f"/datasets/{dataset_id}/images/{image_id}").status_code == 200

    # A remembered filter that fails (saved by an older version, say) is dropped, never fatal.
    live.query("UPDATE dataset_progress SET filters = ? WHERE dataset_id = ?", '{"q": "' + deep + '"}', dataset_id)
    page = client.get(f"/datasets/{dataset_id}")
    assert page.status_code == 200 and "could not be used" in page.text
    assert client.get(f"/datasets/{dataset_id}/images/{image_id}").status_code == 200
    assert '"q"' not in live.query("SELECT filters FROM dataset_progress WHERE dataset_id = ?", dataset_id)[0][0]


def test_eight_simultaneous_saves_one_winner_over_two_processes(live: Live) -> None:
    clients = [live.client() for _ in range(8)]
    folder = live.folder("ada", "race", {"a.png": "tok, start"})
    dataset_id = live.open_dataset(clients[0], folder)
    image_id = live.query("SELECT id FROM dataset_image WHERE dataset_id = ?", dataset_id)[0][0]
    url = f"/datasets/{dataset_id}/images/{image_id}"
    for round_number in range(5):
        version = re.search(r'id="caption-version"[^>]*value="([^"]*)"', clients[0].get(url).text).group(1)
        barrier = threading.Barrier(8)

        def save(n: int) -> tuple[int, str]:
            barrier.wait()
            response = clients[n].post(f"{url}/caption", data={"text": f"tok, round {round_number} writer {n}",
                                                                "version": version})
            return response.status_code, response.text

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(save, range(8)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [200] + [409] * 7, (round_number, statuses)
        winner = next(n for n, (status, _) in enumerate(results) if status == 200)
        on_disk = (folder / "a.txt").read_text()
        assert on_disk == f"tok, round {round_number} writer {winner}"
        caption, = live.query("SELECT caption FROM dataset_image WHERE id = ?", image_id)[0]
        tags = sorted(tag for (tag,) in live.query("SELECT tag FROM dataset_tag WHERE image_id = ?", image_id))
        assert caption == on_disk and tags == sorted(["tok", f"round {round_number} writer {winner}"])
        assert clients[0].get(url).status_code == 200


def test_a_user_sees_and_opens_only_their_own_folders(live: Live) -> None:
    ada, bob = live.client("ada"), live.client("bob")
    folder = live.folder("ada", "private", {"a.png": "tok, ada's caption"})
    assert str(folder) not in bob.get("/datasets/").text and "private" not in bob.get("/datasets/").text
    refused = bob.post("/datasets/", data={"folder": str(folder)})
    assert refused.status_code == 422
    assert bob.post("/datasets/", data={"folder": "../ada/private"}).status_code == 422
    assert "private" in ada.get("/datasets/").text
