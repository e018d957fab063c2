"""Security headers on every kind of response, a CSP that runs only the app's own scripts (and
templates that need nothing more), and session cookies that stay on https when configured."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app import ROOT, create_app
from app.extensions import db
from tests.app_helpers import TEST_PASSWORD
from tests.security_helpers import owned_objects


def csp_directives(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def assert_secure_headers(response, what: str) -> None:
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"], what
    assert csp["style-src"] == ["'self'"], what
    assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"], what
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'self'"], what
    assert "unsafe" not in response.headers["Content-Security-Policy"], what
    assert response.headers["X-Frame-Options"] == "DENY", what
    assert response.headers["X-Content-Type-Options"] == "nosniff", what
    assert response.headers["Referrer-Policy"] == "same-origin", what


def test_every_kind_of_response_carries_the_security_headers(app, client, user):
    values = owned_objects(user, app.config["DATA_DIR"])
    anonymous = app.test_client()
    responses = {
        "login page": anonymous.get("/login"),
        "redirect to the login": anonymous.get("/gallery"),
        "page": client.get("/"),
        "HTMX partial": client.get(f"/jobs/{values['job_id']}/status", headers={"HX-Request": "true"}),
        "file": client.get(f"/generations/{values['generation_id']}.png"),
        "static file": anonymous.get("/static/css/app.css"),
        "JSON": anonymous.get("/health"),
        "error page": client.get("/no/such/page"),
        "webhook answer": anonymous.post("/webhooks/replicate", data=b"{}"),
    }
    for what, response in responses.items():
        assert_secure_headers(response, what)
    assert responses["file"].status_code == 200 and responses["error page"].status_code == 404


def _template_files() -> list[Path]:
    return sorted((ROOT / "templates").rglob("*.html"))


# What the CSP would block in a browser, so a template must not contain it.
FORBIDDEN_IN_TEMPLATES = {
    "an inline <script>": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I),
    "a style attribute": re.compile(r"<[^>]*\sstyle\s*=", re.I),
    "an hx-on attribute": re.compile(r"\shx-on", re.I),
    "an inline event handler": re.compile(r"<[^>]*\son[a-z]+\s*=", re.I),
    "a javascript: URL": re.compile(r"javascript:", re.I),
}


@pytest.mark.parametrize("template", _template_files(), ids=lambda path: str(path.relative_to(ROOT / "templates")))
def test_templates_need_nothing_the_csp_forbids(template):
    text = template.read_text()
    for what, pattern in FORBIDDEN_IN_TEMPLATES.items():
        match = pattern.search(text)
        assert match is None, f"{template.name} has {what}: {match.group(0)[:80]!r}"


def _login_cookies(monkeypatch, secure: bool) -> list[str]:
    if secure:
        monkeypatch.setenv("TESSERA_SECURE_COOKIES", "1")
    else:
        monkeypatch.delenv("TESSERA_SECURE_COOKIES", raising=False)
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False})
    response = app.test_client().post("/login", data={"username": "ada", "password": TEST_PASSWORD,
                                                      "remember": "on"})
    assert response.status_code == 302
    with app.app_context():
        db.engine.dispose()
    return response.headers.getlist("Set-Cookie")


def test_session_cookies_are_https_only_when_configured(monkeypatch, user):
    secure = _login_cookies(monkeypatch, secure=True)
    assert {cookie.split("=")[0] for cookie in secure} == {"session", "remember_token", "tessera_device"}
    for cookie in secure:
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly"} <= attributes, cookie
        assert "SameSite=Lax" in cookie, cookie
    for cookie in _login_cookies(monkeypatch, secure=False):
        assert "Secure" not in cookie and "HttpOnly" in cookie, cookie
