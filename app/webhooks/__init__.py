"""Replicate's webhooks (a shared layer): signed deliveries of prediction states, stored in Redis for
the worker following the prediction (see app.jobs.predictions)."""
from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("webhooks", __name__)
# Replicate cannot hold a CSRF token or a session; every delivery is signature-verified instead.
csrf.exempt(bp)

from app.webhooks import routes  # noqa: E402,F401
