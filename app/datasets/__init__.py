"""The datasets area: LoRA training datasets (folders or zips of images with .txt captions).

Views: `routes` (list, open, grid, files, send from the gallery), `routes_bulk` (tag actions, history,
health, auto-caption, export), `routes_editor` (one image's caption), `routes_health` (health
actions: fixes, merges, exclude, trash, crop to a bucket). Work, no Flask: `index`
(scanning into rows), `grid`, `history`, `health`, `suggestions`, and the file-level modules
(`scan`, `captions`, `bulkwrite`, `tags`, `tagexpr`, `export`, `zipimport`, …). Jobs: `tasks`.
Public surface for other areas: `bp` only (add names to `__all__` to share more).
"""
from flask import Blueprint

bp = Blueprint("datasets", __name__)
__all__ = ["bp"]

from app.datasets import routes, routes_bulk, routes_editor, routes_health, routes_import  # noqa: E402,F401
