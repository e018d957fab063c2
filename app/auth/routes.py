"""Logging in and out, and the first-run page that makes the first account."""
from functools import cache
from urllib.parse import urlsplit

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_url, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth import bp, devices
from app.auth.accounts import (MAX_PASSWORD, MIN_PASSWORD, AccountError, create_user, end_all_sessions,
                               set_password)
from app.auth.ratelimit import LoginLimiter
from app.extensions import db, login_manager
from app.htmx import current_url, is_htmx, redirect_page
from app.models import User
from app.redirects import safe_redirect_target

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
    """Only a path on this site (see app.redirects), else the home page."""
    return safe_redirect_target(target, url_for("generate.index"))


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


def _wait_text(seconds: int) -> str:
    """"8 seconds", "3 minutes": how long to wait before the next try."""
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minutes"


def _device() -> dict:
    return devices.read_device(current_app.config["SECRET_KEY"], request.cookies.get(devices.COOKIE_NAME))


def _remember_device(response, device: dict, username: str):
    config = current_app.config
    response.set_cookie(devices.COOKIE_NAME, devices.remember_login(config["SECRET_KEY"], device, username),
                        max_age=devices.MAX_AGE_SECONDS, httponly=True, secure=config["SESSION_COOKIE_SECURE"],
                        samesite="Lax")
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    no_users = db.session.scalar(db.select(User.id).limit(1)) is None
    error, status, headers = None, 200, {}
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        # The client address is the real one behind nginx when TESSERA_PROXY_FIX is set.
        address, limiter, device = request.remote_addr or "unknown", _limiter(), _device()
        known = devices.is_known(device, username)
        wait = limiter.seconds_blocked(address, username, known_device=known)
        if wait:
            error = f"Too many failed logins. Try again in {_wait_text(wait)}."
            status, headers = 429, {"Retry-After": str(wait)}
        else:
            user = db.session.scalar(db.select(User).where(User.username == username))
            if _password_matches(user, request.form.get("password", "")):
                limiter.record_success(address, username)
                login_user(user, remember=bool(request.form.get("remember")))
                return _remember_device(redirect(_safe_next(request.args.get("next"))), device, username)
            wait = limiter.record_failure(address, username, known_device=known)
            error, status = "Wrong username or password.", 401
            if wait:
                error += f" Wait {_wait_text(wait)} before the next try."
                headers = {"Retry-After": str(wait)}
    return _login_page(error=error, no_users=no_users, setup_allowed=no_users and _setup_allowed(),
                       username=request.form.get("username", "").strip()[:64]), status, headers


def _login_page(**context) -> str:
    return render_template("auth/login.html", min_password=MIN_PASSWORD, max_password=MAX_PASSWORD, **context)


@login_manager.unauthorized_handler
def unauthorized():
    if is_htmx():
        # A fragment (e.g. a job's status poll) after the session ended: send the whole page to the login
        # instead of swapping a login page into the fragment.
        current = urlsplit(current_url())
        next_url = current.path + (f"?{current.query}" if current.query else "") if current.path else None
        return redirect_page(Response(status=401), url_for("auth.login", next=next_url))
    # Opening Tessera (or before any account exists) needs no "please log in": the page says what to do.
    if request.path != "/" and db.session.scalar(db.select(User.id).limit(1)) is not None:
        flash(login_manager.login_message)
    return redirect(login_url("auth.login", next_url=_page_to_return_to()))


def _page_to_return_to() -> str | None:
    """Where the login should lead back to: the address asked for, when it is a page (GET); for a form
    sent after the session ended (say, logged out in another tab) the page the form was on, since the
    form's own address answers only POST (405 after the login). None when unknown: the home page."""
    if request.method in ("GET", "HEAD"):
        return request.url
    referrer = urlsplit(request.referrer or "")
    if not referrer.path or referrer.netloc != request.host:
        return None
    return referrer.path + (f"?{referrer.query}" if referrer.query else "")


@bp.route("/setup", methods=["POST"])
def setup():
    if not _setup_allowed():
        abort(403, "The first account can be created here only from this machine. "
                   "Run `tessera user create NAME` on the server instead.")
    try:
        user = create_user(request.form.get("username", ""), request.form.get("password", ""),
                           request.form.get("confirm", ""))
    except AccountError as exc:
        return _login_page(error=str(exc), no_users=True, setup_allowed=True,
                           username=request.form.get("username", "").strip()[:64]), 422
    login_user(user)
    flash(f"Welcome, {user.username}. Your account is ready.")
    return _remember_device(redirect(url_for("generate.index")), _device(), user.username)


@bp.post("/logout")
def logout():
    # Server-side: the session generation moves on, so a copy of this session or of the "keep me
    # logged in" cookie is worthless from now on (app.auth.accounts.end_all_sessions).
    _end_sessions_of_current_user()
    logout_user()
    return redirect(url_for("auth.login"))


def _end_sessions_of_current_user() -> None:
    user = db.session.get(User, current_user.id) if current_user.is_authenticated else None
    if user is not None:
        end_all_sessions(user)
        db.session.commit()


@bp.get("/account")
def account():
    return _account_page()


def _account_page(error: str | None = None):
    return render_template("auth/account.html", error=error, min_password=MIN_PASSWORD, max_password=MAX_PASSWORD)


@bp.post("/account/password")
def change_password():
    user = db.session.get(User, current_user.id)
    # A session left open on a shared computer must not become a way to guess the password.
    address, limiter = request.remote_addr or "unknown", _limiter()
    wait = limiter.seconds_blocked(address, user.username, known_device=True)
    if wait:
        return _account_page(f"Too many wrong passwords. Try again in {_wait_text(wait)}."), 429, {
            "Retry-After": str(wait)}
    if not user.check_password(request.form.get("current_password", "")):
        limiter.record_failure(address, user.username, known_device=True)
        return _account_page("The current password is wrong, so nothing was changed."), 403
    try:
        set_password(user, request.form.get("new_password", ""), request.form.get("new_confirm", ""))
    except AccountError as exc:
        return _account_page(str(exc)), 422
    # Every session ended with the old password; this browser carries on under the new generation.
    remembered = current_app.config.get("REMEMBER_COOKIE_NAME", "remember_token") in request.cookies
    login_user(user, remember=remembered)
    flash("Your password is changed, and every other session of this account has ended.")
    return redirect(url_for("auth.account"), 303)


@bp.post("/account/logout-everywhere")
def logout_everywhere():
    _end_sessions_of_current_user()
    logout_user()
    flash("Every session of your account has ended, in every browser. Log in again here.")
    return redirect(url_for("auth.login"), 303)
