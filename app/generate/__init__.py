from flask import Blueprint

bp = Blueprint("generate", __name__)

from app.generate import routes  # noqa: E402,F401
