"""A full disk during a tile write, a caption save, an upload or a generation: the user is told "the disk
is full" and what was saved before is intact. The disk is really full: a small tmpfs is mounted over the
folder the write goes to and filled up (root only; skipped where mounting is not permitted)."""
from __future__ import annotations

import errno
import io
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from app.atomic import DISK_FULL_MESSAGE, storage_error_message, write_atomic
from app.canvas.staging import TILES_DIR, tile_store
from tests.canvas_helpers import make_canvas, noise, paint, png, read


class FullDisk:
    """A tmpfs of `size` bytes mounted at `path`; `fill()` leaves it with (almost) no free space."""

    def __init__(self, path: Path, size: int = 4 * 1024 * 1024):
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        self.path = path

    def fill(self) -> None:
        filler = self.path / f".filler-{uuid.uuid4().hex}"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture(autouse=True)
def as_in_production(request):
    """Unhandled errors reach the error handlers, as outside TESTING."""
    if "app" in request.fixturenames:
        request.getfixturevalue("app").config["PROPAGATE_EXCEPTIONS"] = False


@pytest.fixture
def full_disk():
    mounted = []

    def mount(path: Path, size: int = 4 * 1024 * 1024) -> FullDisk:
        disk = FullDisk(path, size)
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        disk.unmount()


def test_a_real_enospc_is_recognised_and_the_old_file_kept(tmp_path, full_disk):
    disk = full_disk(tmp_path / "small")
    target = disk.path / "kept.bin"
    write_atomic(target, b"before")
    disk.fill()
    with pytest.raises(OSError) as raised:
        write_atomic(target, os.urandom(64 * 1024))
    assert raised.value.errno == errno.ENOSPC
    assert storage_error_message(raised.value) == DISK_FULL_MESSAGE
    assert target.read_bytes() == b"before"
    assert [p.name for p in disk.path.iterdir() if p.name.endswith(".tmp")] == []  # no half-written temp left


def import_image(client, canvas, data, filename="photo.png", **fields):
    form = {"x": 0, "y": 0, "w": 512, "h": 512, **fields, "image": (io.BytesIO(data), filename)}
    return client.post(f"/canvas/{canvas.id}/import", data=form, content_type="multipart/form-data")


def test_a_tile_write_on_a_full_disk_says_so_and_keeps_the_canvas(app, client, user, full_disk):
    disk = full_disk(Path(app.config["DATA_DIR"]) / TILES_DIR)
    canvas = make_canvas(user)
    before = noise(256, 256, seed=1, alpha=255)
    paint(canvas, 0, 0, before)
    history = [r.rev for r in tile_store().history(canvas.id)]
    disk.fill()
    response = import_image(client, canvas, png(noise(512, 512, seed=2)), x=0, y=0, w=512, h=512)
    assert response.status_code == 507
    assert "disk is full" in response.get_data(as_text=True)
    # The canvas's page asks for JSON and shows `error`.
    as_json = client.post(f"/canvas/{canvas.id}/import", headers={"Accept": "application/json"},
                          data={"x": 0, "y": 0, "w": 512, "h": 512,
                                "image": (io.BytesIO(png(noise(512, 512, seed=3))), "p.png")},
                          content_type="multipart/form-data")
    assert as_json.status_code == 507 and as_json.get_json() == {"error": DISK_FULL_MESSAGE}
    assert [r.rev for r in tile_store().history(canvas.id)] == history
    assert np.array_equal(read(canvas, 0, 0, 256, 256), before)


def test_an_upload_on_a_full_disk_says_so_and_queues_nothing(app, client, user, full_disk, fake_replicate):
    from app.models import Job
    from app.extensions import db

    disk = full_disk(Path(app.config["DATA_DIR"]) / "uploads")
    disk.fill()
    response = client.post("/generate", headers={"HX-Request": "true"},
                           data={"model": "black-forest-labs/flux-dev", "prompt": "like this",
                                 "image": (io.BytesIO(png(noise(64, 64))), "start.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 507
    assert "The disk is full" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert fake_replicate.requests_to("POST", "/v1/") == []


def test_a_generation_on_a_full_disk_fails_saying_so_and_leaves_no_partial_file(app, client, run_jobs,
                                                                                 fake_replicate, full_disk):
    from app.extensions import db
    from app.gallery import Generation
    from app.models import Job

    disk = full_disk(Path(app.config["DATA_DIR"]) / "outputs", size=256 * 1024)
    disk.fill()
    response = client.post("/generate", data={"model": "black-forest-labs/flux-schnell", "prompt": "a red fox"})
    assert response.status_code == 200
    run_jobs()
    job = db.session.scalar(db.select(Job))
    assert job.status == Job.FAILED and job.error.startswith(DISK_FULL_MESSAGE) and "Errno" not in job.error
    assert "disk is full" in client.get(f"/jobs/{job.id}/status").get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Generation.id))) == 0
    assert [p.name for p in disk.path.rglob("*") if p.is_file() and not p.name.startswith(".filler")] == []


def test_a_database_on_a_full_disk_says_so(app_env, tmp_path, full_disk):
    """SQLite's "database or disk is full" is the same message (the whole data folder on the small disk)."""
    from app.canvas.models import Canvas
    from app.extensions import db
    from tests.app_helpers import app_with_fresh_db, log_in, make_user

    disk = full_disk(tmp_path / "full-data", size=8 * 1024 * 1024)
    if os.environ.get("TESSERA_TEST_DATABASE_URL"):
        pytest.skip("the database is a PostgreSQL server, not a file on this disk")
    with app_with_fresh_db(app_env, DATA_DIR=disk.path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{disk.path}/t.db",
                           PROPAGATE_EXCEPTIONS=False, WTF_CSRF_ENABLED=False) as app:
        client = log_in(app.test_client(), make_user())
        assert client.post("/canvas/", data={"name": "kept"}).status_code == 302
        disk.fill()
        response = client.post("/canvas/", data={"name": "x" * 100})
        for _ in range(20):  # SQLite may still fit a few small rows into free pages of its files
            if response.status_code != 302:
                break
            response = client.post("/canvas/", data={"name": "x" * 100})
        assert response.status_code == 507, response.status_code
        assert "The disk is full" in response.get_data(as_text=True)
        db.session.rollback()
        assert db.session.scalar(db.select(Canvas.name).order_by(Canvas.id)) == "kept"
