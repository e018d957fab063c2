"""The generate area: text/image-to-image with any Replicate model, its form rendered from the model's
schema, and the gallery pages. Views in `routes` (Generate) and `gallery` (the gallery pages), the job
in `tasks`. Public surface: `bp` only.
"""
from flask import Blueprint

bp = Blueprint("generate", __name__)
__all__ = ["bp"]

from app.generate import gallery, routes  # noqa: E402,F401
