"""The canvas area: an unbounded inpainting/outpainting canvas stored as versioned tiles.

Modules: `routes` (pages and HTMX partials), `api` and `api_history` (the JSON and image endpoints
canvas.js calls; `history` keeps the one undo history of mask edits and canvas changes),
`params` (requests parsed and checked), `staging` (requests and staged variations, rows and files),
`tasks` (the generation job), and plain modules that know nothing of Flask: `tiles` (the tile store),
`compose`, `pipeline`, `pngstream`, `modelchoice`. Public surface for other areas: `bp`, and for
Generate's "use as input": `canvas_for_input`, `canvas_png`, `recent_canvases` (see staging).
"""
from flask import Blueprint

bp = Blueprint("canvas", __name__)
__all__ = ["bp", "canvas_for_input", "canvas_png", "recent_canvases"]

from app.canvas import api, api_history, from_gallery, routes  # noqa: E402,F401
from app.canvas.staging import canvas_for_input, canvas_png, recent_canvases  # noqa: E402
