"""The one HTMX vocabulary every area speaks.

- `is_htmx()` — was this request sent by HTMX (an ``HX-Request: true`` header)?
- `message(text, status, kind=…)` — the one message partial, ``templates/_message.html``.
- `form_error(template, context, target=…)` — a form rendered again with its errors, sent back into
  the form itself (``HX-Retarget`` + ``HX-Reswap: outerHTML``) although the form normally targets
  something else, such as the job list.
- `retarget(response, target)` — the same redirection for any response.
- `redirect_page(response, url)` — make the browser load `url` as a whole page (``HX-Redirect``);
  `current_url()` — the page the HTMX request came from (``HX-Current-URL``).

4xx answers are swapped into the page (``responseHandling`` in base.html), so a partial with a
clear message and a 4xx status is how a view reports a problem the user can fix.
"""
from __future__ import annotations

from flask import Response, make_response, render_template, request

MESSAGE_TEMPLATE = "_message.html"
MESSAGE_KINDS = ("error", "warn", "ok", "info")


def is_htmx() -> bool:
    """True when HTMX sent the request (it always sends ``HX-Request: true``)."""
    return request.headers.get("HX-Request") == "true"


def render_message(text: str, *, kind: str = "error", title: str | None = None, code: int | None = None) -> str:
    """The message partial as HTML. `kind` is one of MESSAGE_KINDS (errors are announced with
    ``role="alert"``, the rest with ``role="status"``); `title` is a bold lead such as "Not found";
    `code` is the HTTP status, kept in ``data-status``."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"Unknown message kind {kind!r}")
    return render_template(MESSAGE_TEMPLATE, text=text, kind=kind, title=title, code=code)


def message(text: str, status: int, *, kind: str = "error", title: str | None = None) -> Response:
    """A response holding only the message partial, with `status` (e.g. 422 for input to fix)."""
    return make_response(render_message(text, kind=kind, title=title), status)


def retarget(response: Response, target: str, swap: str = "outerHTML") -> Response:
    """Send `response` into `target` (a CSS selector) instead of the requesting element's target."""
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = swap
    return response


def redirect_page(response: Response, url: str) -> Response:
    """Have HTMX load `url` as a whole page once `response` arrives, instead of swapping it in."""
    response.headers["HX-Redirect"] = url
    return response


def current_url() -> str:
    """The address of the page that sent this HTMX request ("" when unknown)."""
    return request.headers.get("HX-Current-URL", "")


def form_error(template: str, context: dict, *, target: str, status: int = 422) -> Response:
    """`template` rendered with `context` (holding the form's ``errors`` or ``note``), sent back into
    the form at `target` with `status` (422: input to fix; 503: the job queue is down)."""
    return retarget(make_response(render_template(template, **context), status), target)
