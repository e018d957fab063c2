from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("webhooks", __name__)
# Replicate cannot hold a CSRF token or a session; every delivery is signature-verified instead.
csrf.exempt(bp)

from app.webhooks import routes  # noqa: E402,F401
