"""The known-device cookie: a browser that logged in to an account before says so, signed by the server,
so a stranger's failed guesses at that username do not slow its owner down (see app.auth.ratelimit).

The cookie holds a random device id and the (normalised) usernames that logged in from this browser,
signed with SECRET_KEY (itsdangerous, as Flask's own session cookie). It grants nothing by itself: the
password is still checked, and the per-address limits still apply.
"""
from __future__ import annotations

import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.auth.ratelimit import username_key

COOKIE_NAME = "tessera_device"
MAX_AGE_SECONDS = 365 * 24 * 3600
MAX_ACCOUNTS = 8  # a shared family computer; more would only grow the cookie
_SALT = "tessera-known-device"


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_SALT)


def read_device(secret_key: str, cookie: str | None) -> dict:
    """{"id": str, "accounts": [usernames]} from a valid cookie; a missing, forged or expired one is
    a new device."""
    if cookie:
        try:
            data = _serializer(secret_key).loads(cookie, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            data = None
        if isinstance(data, dict) and isinstance(data.get("id"), str) and isinstance(data.get("accounts"), list):
            return {"id": data["id"], "accounts": [a for a in data["accounts"] if isinstance(a, str)]}
    return {"id": secrets.token_urlsafe(16), "accounts": []}


def is_known(device: dict, username: str) -> bool:
    return username_key(username) in device["accounts"]


def remember_login(secret_key: str, device: dict, username: str) -> str:
    """The cookie value after `username` logged in on `device` (most recent account first)."""
    name = username_key(username)
    accounts = [name] + [a for a in device["accounts"] if a != name]
    return _serializer(secret_key).dumps({"id": device["id"], "accounts": accounts[:MAX_ACCOUNTS]})
