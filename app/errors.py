"""Friendly error pages: a whole page for a browser, a small partial for an HTMX request (whose 4xx
answers are swapped into the page, see base.html)."""
from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from app.atomic import storage_error_message
from app.extensions import db
from app.htmx import is_htmx, render_message

log = logging.getLogger(__name__)

bp = Blueprint("errors", __name__)

TITLES = {
    400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed", 409: "Not possible now",
    413: "Too large", 422: "Not accepted", 429: "Too many attempts", 500: "Something went wrong",
    503: "Not available right now", 507: "The disk is full",
}
MESSAGES = {
    400: "The request could not be understood. Reload the page and try again.",
    403: "You are not allowed to do that.",
    404: "There is nothing here: the address is wrong, or the item was deleted.",
    405: "That action is not possible at this address.",
    429: "Too many attempts in a short time. Wait a few minutes and try again.",
    500: "Tessera hit an unexpected error and has logged it. Try again; if it keeps happening, the server log "
         "says more.",
}
CSRF_MESSAGE = ("This form has expired or was not sent from a Tessera page, so nothing was changed. "
                "Reload the page and try again.")


def too_large_message() -> str:
    megabytes = current_app.config["MAX_IMAGE_UPLOAD_BYTES"] // (1024 * 1024)
    return (f"What you sent is larger than this server accepts, so nothing was saved. Images may be at most "
            f"{megabytes} MB; choose a smaller file.")


def error_response(code: int, message: str, headers: list[tuple[str, str]] | None = None):
    """The error as JSON for fetch() callers that ask for it (the canvas shows `error` in its status
    line), the message partial for an HTMX request, else a whole page."""
    if request.accept_mimetypes.best == "application/json":
        return jsonify(error=message), code, headers or []
    title = TITLES.get(code, "Error")
    if is_htmx():
        body = render_message(message, kind="error", title=title, code=code)
    else:
        body = render_template("errors/page.html", code=code, title=title, message=message)
    return body, code, headers or []


def _message_of(error: HTTPException) -> str:
    if isinstance(error, CSRFError):
        return CSRF_MESSAGE
    if isinstance(error, RequestEntityTooLarge):
        return too_large_message()
    # A description passed to abort() is written for the user; Werkzeug's stock ones are not.
    if error.description and error.description != type(error).description:
        return error.description
    return MESSAGES.get(error.code, error.description or "")


def handle_http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    if error.code >= 500:
        return handle_server_error(error)
    headers = [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
    return error_response(error.code, _message_of(error), headers)


def handle_server_error(error: HTTPException):
    # The failed request may have left the session mid-transaction; the page needs a usable one.
    db.session.rollback()
    code = error.code if error.code and error.code >= 500 else 500
    message = MESSAGES[500] if isinstance(error, InternalServerError) else _message_of(error)
    # A write that failed for lack of space, anywhere below the view: say so (507 Insufficient Storage).
    storage_message = storage_error_message(getattr(error, "original_exception", None))
    if storage_message:
        code, message = 507, storage_message
    try:
        return error_response(code, message)
    except Exception:  # e.g. the database is down and the page cannot load the user
        log.exception("The error page itself failed")
        return f"{TITLES.get(code, 'Error')}: {message}", code, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/errors/too-large")
def too_large():
    """The page nginx shows (error_page 413) when it refuses an upload before the app sees it."""
    return error_response(413, too_large_message())


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(InternalServerError, handle_server_error)
