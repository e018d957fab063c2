"""The gallery's outputs (a shared layer): every image a model made, as a `Generation` row and a PNG
under DATA_DIR/outputs that carries its parameters.

Generate, canvas and datasets all read or write these; the gallery *pages* are views of the
generate area. Public surface (import it from here):

- `Generation` — the row (``in_gallery`` is False for canvas variations until the user keeps one).
- `save_generation(client, url, job, model_ref, request_input, index, *, in_gallery=True)` —
  download one output, store it as PNG with its parameters, add the row.
- `store_generation(data, …)` — the same for image bytes already fetched (a data: URI, any format).
- `OutputFile`, `store_output_file`, `store_output_text` — outputs that are not images (text, video,
  audio, archives), kept so no paid prediction is lost over its output's shape.
- `parameters_text`, `save_png` — the PNG ``parameters`` chunk, for anything else that writes outputs.
"""
from app.gallery.models import Generation, OutputFile
from app.gallery.outputs import (parameters_text, save_generation, save_png, store_generation, store_output_file,
                                 store_output_text)

__all__ = ["Generation", "OutputFile", "parameters_text", "save_generation", "save_png", "store_generation",
           "store_output_file", "store_output_text"]
