"""Who may reach a row: the one set of ownership helpers every area's views use.

A row another user owns answers 404, never 403 (which would confirm that the id exists). Views call
these directly, e.g. ``owned_or_404(Canvas, canvas_id)`` or
``child_or_404(DatasetImage, image_id, dataset_id=dataset.id)``; no area wraps them in its own name.
"""
from __future__ import annotations

from flask import abort, session
from flask_login import current_user

from app.extensions import db
from app.models import parse_login_id


def owned_or_404(model, object_id):
    """The current user's row of `model` (any table with a ``user_id`` column) with this primary key.

    :raise 404: when there is no such row, ``object_id`` is None, or another user owns it.
    """
    found = db.session.get(model, object_id) if object_id is not None else None
    if found is None or found.user_id != current_user.id:
        abort(404)
    return found


def child_or_404(model, object_id, **parent):
    """A row of `model` that belongs to an already-owned parent, e.g. ``canvas_id=canvas.id``.

    :raise 404: when there is no such row, ``object_id`` is None, or any ``parent`` column differs.
    """
    found = db.session.get(model, object_id) if object_id is not None else None
    if found is None or any(getattr(found, field) != value for field, value in parent.items()):
        abort(404)
    return found


def checks_own_login(view):
    """Mark a view that authorises the session's user itself, in the same query that reads its
    object, so the app-wide login check does not load the user separately. Only for hot read-only
    views; the view must call `session_login()` and answer `login_manager.unauthorized()`."""
    view.checks_own_login = True
    return view


def session_login() -> tuple[int, int] | None:
    """(account id, session generation) the signed session names, or None; still to be checked
    against the user table, where the generation must be the current one (see app.models.User)."""
    value = session.get("_user_id")
    return parse_login_id(value) if value is not None else None
