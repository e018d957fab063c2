from flask import Blueprint

bp = Blueprint("datasets", __name__)

from app.datasets import routes, routes_bulk, routes_editor  # noqa: E402,F401
# For the LoRAs area, which trains on a dataset: its rows, the images of a scope and the training zip.
from app.datasets.export import write_training_zip  # noqa: E402
from app.datasets.models import Dataset  # noqa: E402
from app.datasets.paths import PathRefused  # noqa: E402
from app.datasets.selection import ImageFacts, scope_images, zip_items  # noqa: E402

__all__ = ["bp", "Dataset", "ImageFacts", "PathRefused", "scope_images", "write_training_zip", "zip_items"]
