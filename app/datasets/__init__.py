"""The datasets area: LoRA training datasets (folders or zips of images with .txt captions).

Views: `routes` (list, open, grid, files, send from the gallery), `routes_bulk` (tag actions, history,
health, auto-caption, export), `routes_editor` (one image's caption), `routes_health` (health
actions: fixes, merges, exclude, move to the trash), `routes_trash` (the trash: list, restore, empty),
`routes_crop` (the crop tool and bulk crops to buckets). Work, no Flask: `index`
(scanning into rows), `grid`, `history`, `health`, `suggestions`, and the file-level modules
(`scan`, `captions`, `bulkwrite`, `tags`, `tagexpr`, `export`, `zipimport`, …). Jobs: `tasks`, `filetasks` (crops, emptying the trash); `autocrop` places automatic crops.
Public surface for other areas: `bp`, and for the LoRAs area, which trains on a dataset, its rows
(`Dataset`), the images of a scope (`scope_images`, `ImageFacts`) and the training zip (`zip_items`,
`write_training_zip`, `PathRefused`).
"""
from flask import Blueprint

bp = Blueprint("datasets", __name__)

from app.datasets import (routes, routes_bulk, routes_crop, routes_editor, routes_health, routes_import,  # noqa: E402,F401
                          routes_trash)
from app.datasets.export import write_training_zip  # noqa: E402
from app.datasets.models import Dataset  # noqa: E402
from app.datasets.paths import PathRefused  # noqa: E402
from app.datasets.selection import ImageFacts, scope_images, zip_items  # noqa: E402

__all__ = ["bp", "Dataset", "ImageFacts", "PathRefused", "scope_images", "write_training_zip", "zip_items"]
