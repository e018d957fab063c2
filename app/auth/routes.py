from functools import cache
from urllib.parse import urlsplit

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_url, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth import bp, devices
from app.auth.accounts import MAX_PASSWORD, MIN_PASSWORD, AccountError, create_user
from app.auth.ratelimit import LoginLimiter
from app.extensions import db, login_manager
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
    if request.headers.get("HX-Request") == "true":
        # A fragment (e.g. a job's status poll) after the session ended: send the whole page to the login
        # instead of swapping a login page into the fragment.
        current = urlsplit(request.headers.get("HX-Current-URL", ""))
        next_url = current.path + (f"?{current.query}" if current.query else "") if current.path else None
        response = Response(status=401)
        response.headers["HX-Redirect"] = url_for("auth.login", next=next_url)
        return response
    # Opening Tessera (or before any account exists) needs no "please log in": the page says what to do.
    if request.path != "/" and db.session.scalar(db.select(User.id).limit(1)) is not None:
        flash(login_manager.login_message)
    return redirect(login_url("auth.login", next_url=request.url))


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
    logout_user()
    return redirect(url_for("auth.login"))
