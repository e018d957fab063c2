from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from app.auth import bp
from app.auth.accounts import AccountError, create_user
from app.extensions import db
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
    if target and not urlsplit(target).netloc and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("generate.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    no_users = db.session.scalar(db.select(User.id).limit(1)) is None
    error = None
    if request.method == "POST":
        user = db.session.scalar(db.select(User).where(User.username == request.form.get("username", "").strip()))
        if user is None or not user.check_password(request.form.get("password", "")):
            error = "Wrong username or password."
        else:
            login_user(user, remember=bool(request.form.get("remember")))
            return redirect(_safe_next(request.args.get("next")))
    status = 401 if error else 200
    return render_template("auth/login.html", error=error, no_users=no_users,
                           setup_allowed=no_users and _setup_allowed()), status


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
