"""Logging in and out, and the first-run page that makes the first account."""
from functools import cache
from urllib.parse import urlsplit

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_url, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth import bp
from app.auth.accounts import AccountError, create_user
from app.auth.ratelimit import LoginLimiter
from app.extensions import db, login_manager
from app.htmx import current_url, is_htmx, redirect_page
from app.models import User

FORWARDING_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


def _setup_allowed() -> bool:
    """The first account may be made in the browser only before any exists, and only from this
    machine directly: a request through a proxy could come from anywhere."""
    if db.session.scalar(db.select(User.id).limit(1)) is not None:
        return False
    if any(h in request.headers for h in FORWARDING_HEADERS):
        return False
    return request.remote_addr in ("127.0.0.1", "::1")


def _safe_next(target: str | None) -> str:
    """Only a path on this site; browsers read "/\\host" and "/<tab>/host" as another host, so those are out."""
    if (target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc
            and "\\" not in target and not any(ord(char) < 0x20 for char in target)):
        return target
    return url_for("generate.index")


def _limiter() -> LoginLimiter:
    config = current_app.config
    return LoginLimiter(current_app.redis, per_address=config["LOGIN_FAILURES_PER_ADDRESS"],
                        per_username=config["LOGIN_FAILURES_PER_USERNAME"],
                        window_seconds=config["LOGIN_WINDOW_SECONDS"])


@cache
def _unknown_user_hash() -> str:
    return generate_password_hash("no account has this password")


def _password_matches(user: User | None, password: str) -> bool:
    if user is None:
        # Take as long as for a real account, so the answer time does not tell which usernames exist.
        check_password_hash(_unknown_user_hash(), password)
        return False
    return user.check_password(password)


def _minutes(seconds: int) -> str:
    minutes = max(1, -(-seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    no_users = db.session.scalar(db.select(User.id).limit(1)) is None
    error, status, headers = None, 200, {}
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        # The client address is the real one behind nginx when TESSERA_PROXY_FIX is set.
        address, limiter = request.remote_addr or "unknown", _limiter()
        wait = limiter.seconds_blocked(address, username)
        if wait:
            error = f"Too many failed logins. Try again in {_minutes(wait)}."
            status, headers = 429, {"Retry-After": str(wait)}
        else:
            user = db.session.scalar(db.select(User).where(User.username == username))
            if _password_matches(user, request.form.get("password", "")):
                limiter.clear(address, username)
                login_user(user, remember=bool(request.form.get("remember")))
                return redirect(_safe_next(request.args.get("next")))
            limiter.record_failure(address, username)
            error, status = "Wrong username or password.", 401
    return render_template("auth/login.html", error=error, no_users=no_users,
                           setup_allowed=no_users and _setup_allowed()), status, headers


@login_manager.unauthorized_handler
def unauthorized():
    if is_htmx():
        # A fragment (e.g. a job's status poll) after the session ended: send the whole page to the login
        # instead of swapping a login page into the fragment.
        current = urlsplit(current_url())
        next_url = current.path + (f"?{current.query}" if current.query else "") if current.path else None
        return redirect_page(Response(status=401), url_for("auth.login", next=next_url))
    flash(login_manager.login_message)
    return redirect(login_url("auth.login", next_url=request.url))


@bp.route("/setup", methods=["POST"])
def setup():
    if not _setup_allowed():
        abort(403, "The first account can be created here only from this machine. "
                   "Run `tessera user create NAME` on the server instead.")
    try:
        user = create_user(request.form.get("username", ""), request.form.get("password", ""))
    except AccountError as exc:
        return render_template("auth/login.html", error=str(exc), no_users=True, setup_allowed=True), 422
    login_user(user)
    flash(f"Welcome, {user.username}. Your account is ready.")
    return redirect(url_for("generate.index"))


@bp.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("auth.login"))
