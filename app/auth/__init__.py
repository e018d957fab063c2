from flask import Blueprint

bp = Blueprint("auth", __name__)


def owned_or_404(model, object_id):
    """The current user's object of `model` with this id; anyone else's, or none, is a 404 (never a
    403, which would confirm that the id exists)."""
    from flask import abort
    from flask_login import current_user

    from app.extensions import db

    found = db.session.get(model, object_id) if object_id is not None else None
    if found is None or found.user_id != current_user.id:
        abort(404)
    return found


def child_or_404(model, object_id, **parent):
    """A row of `model` that belongs to an already-owned parent, e.g. `canvas_id=canvas.id`; a row
    of another parent, or none, is a 404 like `owned_or_404`."""
    from flask import abort

    from app.extensions import db

    found = db.session.get(model, object_id) if object_id is not None else None
    if found is None or any(getattr(found, field) != value for field, value in parent.items()):
        abort(404)
    return found


def checks_own_login(view):
    """Mark a view that authorises the session's user itself, in the same query that reads its
    object, so the app-wide login check does not load the user separately. Only for hot read-only
    views; the view must call `session_user_id()` and answer `login_manager.unauthorized()`."""
    view.checks_own_login = True
    return view


def session_user_id() -> int | None:
    """The account id the signed session names (still to be checked against the user table)."""
    from flask import session

    value = session.get("_user_id")
    return int(value) if value is not None and str(value).isdigit() else None

from app.auth import routes  # noqa: E402,F401
