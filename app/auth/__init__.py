"""Accounts and logging in (a shared layer: every area's views rely on it).

Public surface: `bp` (the login pages) and, in `app.auth.access`, the ownership helpers every area
uses to reach a row: `owned_or_404`, `child_or_404`, `checks_own_login`, `session_login`.
"""
from flask import Blueprint

bp = Blueprint("auth", __name__)

from app.auth import routes  # noqa: E402,F401
