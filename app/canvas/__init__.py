from flask import Blueprint

bp = Blueprint("canvas", __name__)

# The routes are imported by the app factory (`from app.canvas.routes import bp`), not here: plain
# modules of this package (the tile store, which app.models imports for its tables) must load
# without pulling in the routes and, through them, the job runner that imports app.models.
