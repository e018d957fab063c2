"""Real nginx in front of the real app, both run from the files in deploy/: the nginx site config (its
example host, folders and ports substituted), the web unit's gunicorn command and the env file's proxy
settings. Over https it checks logins, files streamed by nginx through X-Accel-Redirect, the friendly
page for an upload nginx refuses, and the real client address behind the proxy."""
from __future__ import annotations

import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from PIL import Image
from redis import Redis

from app import ROOT
from app.auth.ratelimit import KEY_PREFIX
from app.extensions import db
from app.gallery import Generation
from app.models import Job
from tests.app_helpers import TEST_PASSWORD, forget_login_failures
from tests.live import free_port
from tests.security_helpers import owned_objects

NGINX = Path("/usr/sbin/nginx")
OPENSSL = Path("/usr/bin/openssl")
SITE = ROOT / "deploy" / "nginx" / "tessera.conf"
WEB_UNIT = ROOT / "deploy" / "systemd" / "tessera-web.service"
ENV_EXAMPLE = ROOT / "deploy" / "tessera.env.example"
# The env file's settings for running behind this nginx (the rest of it are placeholders).
PROXY_SETTINGS = ("TESSERA_PROXY_FIX", "TESSERA_ACCEL_REDIRECT_PREFIX", "TESSERA_SECURE_COOKIES")
UNIT_APP = "/srv/tessera/app"
FRIENDLY_413 = "larger than this server accepts"


def _require(tool: Path, package: str) -> None:
    if tool.exists():
        return
    reason = f"{tool} is not installed (apt-get install {package})"
    if os.environ.get("TESSERA_REQUIRE_NGINX") == "1" or os.environ.get("TESSERA_REQUIRE_BROWSER") == "1":
        pytest.fail(f"The nginx tests are required here, but {reason}.")
    pytest.skip(reason)


def _substitute(text: str, replacements: dict[str, str]) -> str:
    for example, value in replacements.items():
        assert example in text, f"{example!r} is no longer in the deploy file: update this test with it"
        text = text.replace(example, value)
    return text


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    cert, key = folder / "fullchain.pem", folder / "privkey.pem"
    subprocess.run([str(OPENSSL), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    _require(OPENSSL, "openssl")
    return make_certificate(tmp_path_factory.mktemp("tls"))


@dataclass
class Stack:
    url: str  # https, through nginx
    http_url: str  # plain http, through nginx
    app_url: str  # gunicorn itself, bypassing nginx
    tls: ssl.SSLContext
    app_log: Path  # gunicorn's access log
    app_pid: int  # gunicorn's master process
    nginx_pid: int  # nginx's master process

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.tls, timeout=30)

    def log_in(self, client: httpx.Client, username: str = "ada", password: str = TEST_PASSWORD,
               **headers) -> httpx.Response:
        token = csrf_token(client.get("/login"))
        return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                           headers={"Referer": f"{self.url}/login", **headers})


def csrf_token(response: httpx.Response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.text).group(1)


def nginx_site(data_dir: Path, ports: dict[str, int], certificate: tuple[Path, Path]) -> str:
    """deploy/nginx/tessera.conf with its example values replaced by this test's."""
    return _substitute(SITE.read_text(), {
        "listen 80;": f"listen 127.0.0.1:{ports['http']};",
        "listen 443 ssl;": f"listen 127.0.0.1:{ports['https']} ssl;",
        "/etc/letsencrypt/live/tessera.example.com/fullchain.pem": str(certificate[0]),
        "/etc/letsencrypt/live/tessera.example.com/privkey.pem": str(certificate[1]),
        "server_name tessera.example.com;": "server_name 127.0.0.1;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{ports['app']};",
        f"alias {UNIT_APP}/static/;": f"alias {ROOT / 'static'}/;",
        "alias /srv/tessera/data/;": f"alias {data_dir}/;",
    })


def nginx_main_config(folder: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf provides around a site, with every path inside `folder`."""
    # As root the workers would become `nobody`, who cannot read the test's private temp folders.
    user = "user root;" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}
daemon off;
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'error.log'};
events {{ worker_connections 64; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder / 'access.log'};
{temp_paths}
    include {site};
}}
"""


def web_command(port: int) -> list[str]:
    """The web unit's ExecStart, run from this checkout's virtualenv on `port`."""
    exec_start = next(line.removeprefix("ExecStart=") for line in WEB_UNIT.read_text().splitlines()
                      if line.startswith("ExecStart="))
    command = _substitute(exec_start, {f"{UNIT_APP}/.venv/bin/": str(Path(sys.executable).parent) + "/",
                                       "--bind 127.0.0.1:8000": f"--bind 127.0.0.1:{port}"})
    return shlex.split(command)


def proxy_settings() -> dict[str, str]:
    settings = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                    if line.split("=", 1)[0] in PROXY_SETTINGS)
    assert set(settings) == set(PROXY_SETTINGS)
    return settings


def _wait_until_up(stack: Stack, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{stack.url}/health", verify=stack.tls, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if any(process.poll() is not None for process in processes) or time.monotonic() > deadline:
            raise RuntimeError("nginx or gunicorn did not start")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)  # a quick stop for both gunicorn and nginx
        process.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def nginx_in_front_of_gunicorn(folder: Path, data_dir: Path, env: dict[str, str],
                               certificate: tuple[Path, Path]) -> Iterator[Stack]:
    """nginx with the deploy site config and gunicorn with the web unit's command, both stopped after."""
    ports = {"app": free_port(), "http": free_port(), "https": free_port()}
    site = folder / "tessera.conf"
    site.write_text(nginx_site(data_dir.resolve(), ports, certificate))
    (folder / "nginx.conf").write_text(nginx_main_config(folder, site))
    app_log = folder / "gunicorn.log"
    processes = []
    try:
        with app_log.open("wb") as log:
            processes.append(subprocess.Popen(web_command(ports["app"]), cwd=ROOT, env=env, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True))
        processes.append(subprocess.Popen([str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf"),
                                           "-e", str(folder / "error.log")], start_new_session=True))
        stack = Stack(url=f"https://127.0.0.1:{ports['https']}", http_url=f"http://127.0.0.1:{ports['http']}",
                      app_url=f"http://127.0.0.1:{ports['app']}",
                      tls=ssl.create_default_context(cafile=str(certificate[0])), app_log=app_log,
                      app_pid=processes[0].pid, nginx_pid=processes[1].pid)
        _wait_until_up(stack, processes)
        yield stack
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture
def stack(app, app_env, user, tmp_path, certificate):
    _require(NGINX, "nginx-light")
    redis = Redis.from_url(app_env["REDIS_URL"])
    forget_login_failures(redis)
    env = {**os.environ, **app_env, **proxy_settings(), "TESSERA_LOGIN_FAILURES_PER_ADDRESS": "3"}
    folder = tmp_path / "nginx"
    folder.mkdir()
    try:
        with nginx_in_front_of_gunicorn(folder, Path(app.config["DATA_DIR"]), env, certificate) as running:
            yield running
    finally:
        forget_login_failures(redis)


def test_logins_work_through_nginx_over_https(stack):
    redirect = httpx.get(f"{stack.http_url}/login")
    assert redirect.status_code == 301 and redirect.headers["Location"].startswith("https://127.0.0.1")
    with stack.client() as browser:
        assert browser.get("/").status_code == 302
        response = stack.log_in(browser)
        assert response.status_code == 302 and response.headers["Location"] == "/"
        session_cookie = next(value for value in response.headers.get_list("set-cookie")
                              if value.startswith("session="))
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie
        page = browser.get("/")
        assert page.status_code == 200 and "ada" in page.text
        assert page.headers["Strict-Transport-Security"].startswith("max-age=")
        # The app knows it is reached over https at this host (ProxyFix): Flask-WTF's https check
        # refuses a form posted from another site's page even with a valid token.
        token = csrf_token(page)
        foreign = browser.post("/logout", data={"csrf_token": token}, headers={"Referer": "https://evil.example/"})
        assert foreign.status_code == 400 and browser.get("/").status_code == 200
        same_site = browser.post("/logout", data={"csrf_token": token}, headers={"Referer": f"{stack.url}/"})
        assert same_site.status_code == 302 and browser.get("/").status_code == 302


def _generation_image(request, app, user) -> tuple[str, str, bytes]:
    values = owned_objects(user, app.config["DATA_DIR"])
    generation = db.session.get(Generation, values["generation_id"])
    data = (Path(app.config["DATA_DIR"]) / generation.path).read_bytes()
    return f"/generations/{generation.id}.png", generation.path, data


def _canvas_tile(request, app, user) -> tuple[str, str, bytes]:
    from app.canvas.models import Canvas
    from app.canvas.staging import tile_store

    canvas = Canvas(user_id=user.id, name="nginx", settings={})
    db.session.add(canvas)
    db.session.commit()
    store = tile_store()
    head = store.write_region(canvas.id, 0, 0, Image.new("RGBA", (64, 64), (9, 99, 199, 255)), base_revision=None,
                              description="paint")
    path = store.tile_path(canvas.id, 0, 0, 0, head)
    return (f"/canvas/{canvas.id}/tiles/0/0/0/{head}.png", path.relative_to(app.config["DATA_DIR"]).as_posix(),
            path.read_bytes())


def _dataset_thumbnail(request, app, user) -> tuple[str, str, bytes]:
    from app.datasets.models import DatasetImage
    from app.datasets.thumbnails import thumb_relpath
    from tests.datasets_helpers import make_folder, open_dataset

    dataset = open_dataset(request.getfixturevalue("client"), request.getfixturevalue("run_jobs"), make_folder(app))
    image = db.session.scalars(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id)
                               .order_by(DatasetImage.relpath)).first()
    relpath = thumb_relpath(image.content_hash)
    url = f"/datasets/{dataset.id}/thumbs/{image.id}-{image.content_hash[:16]}.webp"
    return url, relpath, (Path(app.config["DATA_DIR"]) / relpath).read_bytes()


def _dataset_image(request, app, user) -> tuple[str, str, bytes]:
    from app.datasets.models import DatasetImage
    from tests.datasets_helpers import make_folder, open_dataset

    folder = make_folder(app)  # under the default root, inside the data folder
    dataset = open_dataset(request.getfixturevalue("client"), request.getfixturevalue("run_jobs"), folder)
    image = db.session.scalars(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id)
                               .order_by(DatasetImage.relpath)).first()
    path = folder / image.relpath
    relpath = path.resolve().relative_to(Path(app.config["DATA_DIR"]).resolve()).as_posix()
    return f"/datasets/{dataset.id}/images/{image.id}/file", relpath, path.read_bytes()


# name -> makes a user's file in the data folder; returns (its URL, its path in the data folder, its bytes).
SERVED_FILES = {"generation image": _generation_image, "canvas tile": _canvas_tile,
                "dataset thumbnail": _dataset_thumbnail, "dataset image": _dataset_image}


UNVERSIONED = {"dataset image"}


@pytest.mark.parametrize("kind", SERVED_FILES)
def test_files_are_streamed_by_nginx_after_the_app_checked_access(request, app, user, stack, kind):
    url, relpath, data = SERVED_FILES[kind](request, app, user)
    with stack.client() as browser:
        assert browser.get(url).status_code == 302  # not logged in: the app refused, nginx sent nothing
        assert stack.log_in(browser).status_code == 302
        response = browser.get(url)
        assert response.status_code == 200 and response.content == data
        # nginx's own static-file answer: its ETag and byte ranges, which the app never sends.
        assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', response.headers["ETag"])
        assert response.headers["Accept-Ranges"] == "bytes" and "X-Accel-Redirect" not in response.headers
        part = browser.get(url, headers={"Range": "bytes=0-7"})
        assert part.status_code == 206 and part.content == data[:8]
        # The app itself only checked access and named the file; it sent no bytes.
        cookie = f"session={browser.cookies['session']}"
        from_app = httpx.get(f"{stack.app_url}{url}", headers={"Cookie": cookie})
        assert from_app.status_code == 200 and from_app.content == b""
        assert from_app.headers["X-Accel-Redirect"] == f"/_data/{relpath}"
        assert response.headers["Content-Type"] == from_app.headers["Content-Type"]  # not guessed by nginx
        if kind in UNVERSIONED:  # the file can change under the same URL: revalidate, never cache forever
            assert "immutable" not in response.headers.get("Cache-Control", "")
        else:
            assert response.headers.get_list("Cache-Control") == ["private, max-age=31536000, immutable"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response.headers["Content-Security-Policy"]
        # The internal location cannot be asked for directly, not even for the session key.
        assert browser.get(f"/_data/{relpath}").status_code == 404
        assert browser.get("/_data/secret_key").status_code == 404


def test_an_oversized_upload_is_refused_by_nginx_with_the_friendly_page(app, stack):
    limit_mb = int(re.search(r"^\s*client_max_body_size (\d+)m;", SITE.read_text(), re.M).group(1))
    too_big = b"\0" * ((limit_mb + 1) * 1024 * 1024)
    with stack.client() as browser:
        assert stack.log_in(browser).status_code == 302
        token = csrf_token(browser.get("/"))
        files = {"image": ("big.png", too_big, "image/png")}
        data = {"csrf_token": token, "model": "black-forest-labs/flux-dev", "prompt": "a fox"}
        page = browser.post("/generate", data=data, files=files, headers={"Referer": f"{stack.url}/"})
        assert page.status_code == 413 and FRIENDLY_413 in page.text and "<html" in page.text
        partial = browser.post("/generate", data=data, files=files,
                               headers={"Referer": f"{stack.url}/", "HX-Request": "true"})
        assert partial.status_code == 413 and FRIENDLY_413 in partial.text and "<html" not in partial.text
    access_log = stack.app_log.read_text()
    assert "GET /errors/too-large" in access_log and "POST /generate" not in access_log  # nginx kept it out
    assert db.session.scalar(db.select(db.func.count(Job.id))) == 0
    assert not (Path(app.config["DATA_DIR"]) / "uploads").exists()


def test_the_app_sees_the_real_client_address_behind_nginx(app_env, stack):
    with stack.client() as browser:
        # Forged forwarding headers do not make an attacker a new client for the rate limit.
        # (3 failures per address are allowed; the 4th asks for a wait.)
        for number, name in enumerate(("ada", "bob", "cy", "dee")):
            guess = stack.log_in(browser, name, "guess", **{"X-Forwarded-For": f"198.51.100.{number}",
                                                           "X-Real-IP": f"198.51.100.{number}"})
            assert guess.status_code == 401
        refused = stack.log_in(browser, **{"X-Forwarded-For": "198.51.100.99"})
        assert refused.status_code == 429 and "Too many failed logins" in refused.text
    redis = Redis.from_url(app_env["REDIS_URL"])
    counted = sorted(key.decode() for key in redis.scan_iter(f"{KEY_PREFIX}:count:address:*"))
    assert counted == [f"{KEY_PREFIX}:count:address:127.0.0.1"]


def test_every_setting_in_the_env_example_is_one_tessera_reads():
    names = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    config = (ROOT / "app" / "config.py").read_text()
    read = set(re.findall(r"""(?:os\.environ\.get\(|os\.environ\[|_env_list\()["']([A-Z0-9_]+)["']""", config))
    assert {"DATABASE_URL", "TESSERA_PROXY_FIX"} <= names
    assert names <= read, f"not settings of Tessera: {sorted(names - read)}"
