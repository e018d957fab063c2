from flask import Blueprint

bp = Blueprint("datasets", __name__)

from app.datasets import routes, routes_bulk, routes_editor, routes_import  # noqa: E402,F401
