"""The gallery's outputs (a shared layer): every image a model made, as a `Generation` row and a PNG
under DATA_DIR/outputs that carries its parameters.

Generate, canvas and datasets all read or write these; the gallery *pages* are views of the
generate area. Public surface (import it from here):

- `Generation` — the row (``in_gallery`` is False for canvas variations until the user keeps one).
- `save_generation(client, url, job, model_ref, request_input, index, *, in_gallery=True)` —
  download one output, store it as PNG with its parameters, add the row.
- `parameters_text`, `save_png` — the PNG ``parameters`` chunk, for anything else that writes outputs.
"""
from app.gallery.models import Generation
from app.gallery.outputs import parameters_text, save_generation, save_png

__all__ = ["Generation", "parameters_text", "save_generation", "save_png"]
