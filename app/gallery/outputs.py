"""Storing generated images as PNGs that carry their parameters (the `parameters` text chunk), and
recording each as a `Generation` row."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

from flask import current_app
from PIL import Image, PngImagePlugin

from app.atomic import atomic_file, write_atomic
from app.extensions import db
from app.gallery.models import Generation, OutputFile
from app.replicate.client import OutputFile as FetchedFile, ReplicateClient

# Labels in the order A1111-style tools write them, so other tools read our PNGs.
PARAMETER_LABELS = [
    ("num_inference_steps", "Steps"), ("steps", "Steps"), ("scheduler", "Sampler"),
    ("guidance", "CFG scale"), ("guidance_scale", "CFG scale"), ("seed", "Seed"),
    ("prompt_strength", "Denoising strength"), ("strength", "Denoising strength"),
]


def parameters_text(model_ref: str, model_input: dict, size: tuple[int, int]) -> str:
    """The ecosystem's convention: prompt, then 'Negative prompt: …', then 'Key: value, …'."""
    lines = [str(model_input.get("prompt", ""))]
    if model_input.get("negative_prompt"):
        lines.append(f"Negative prompt: {model_input['negative_prompt']}")
    pairs, seen = [], set()
    for key, label in PARAMETER_LABELS:
        if key in model_input and label not in seen:
            pairs.append(f"{label}: {model_input[key]}")
            seen.add(label)
    pairs.append(f"Size: {size[0]}x{size[1]}")
    pairs.append(f"Model: {model_ref}")
    for key, value in model_input.items():
        if key not in {"prompt", "negative_prompt"} | {k for k, _ in PARAMETER_LABELS} and _is_plain(value):
            pairs.append(f"{key}: {value}")
    lines.append(", ".join(pairs))
    return "\n".join(lines)


def _is_plain(value) -> bool:
    # File inputs (data URIs, URLs) would bloat the chunk and leak upload URLs.
    return isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) < 200
                                                      and not value.startswith(("data:", "http")))


def save_png(data: bytes, dest: Path, parameters: Callable[[tuple[int, int]], str]) -> tuple[int, int]:
    """Write the image as PNG with the parameters text made for its size, atomically; returns its size."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", parameters(image.size))  # tEXt when Latin-1, iTXt otherwise, as A1111 does
        with atomic_file(dest) as file:
            image.save(file, "PNG", pnginfo=info)
        return image.size


def save_generation(client: ReplicateClient, url: str, job, model_ref: str, request_input: dict, index: int,
                    *, in_gallery: bool = True) -> Generation:
    """Download output `index` of `job`'s prediction from `url` (or decode it, a data: URI) and keep it
    as a gallery image (see `store_generation`). Raises `ReplicateError` (``OutputError`` included)
    when the download fails, comes from a host Tessera does not trust, or is not a readable image.
    """
    data, _format = client.download_image(url)
    return store_generation(data, job, model_ref, request_input, index, in_gallery=in_gallery)


def store_generation(data: bytes, job, model_ref: str, request_input: dict, index: int,
                     *, in_gallery: bool = True) -> Generation:
    """Keep image bytes (any format Pillow reads) as output `index` of `job`: a PNG at
    ``DATA_DIR/outputs/YYYY/MM/<job id>-<index>.png`` (the job's creation month) with `request_input`
    (the model input as the user chose it: no files, no secrets) in its ``parameters`` chunk, and a
    committed `Generation` row. ``in_gallery=False`` keeps it out of the gallery (a canvas variation
    until the user saves it)."""
    relpath = Path("outputs") / job.created_at.strftime("%Y/%m") / f"{job.id}-{index}.png"
    dest = Path(current_app.config["DATA_DIR"]) / relpath
    size = save_png(data, dest, lambda size: parameters_text(model_ref, request_input, size))
    seed = request_input.get("seed")
    generation = Generation(
        user_id=job.user_id, job_id=job.id, model_ref=model_ref, prompt=str(request_input.get("prompt", "")),
        params=request_input, seed=int(seed) if isinstance(seed, int) else None, output_index=index,
        path=relpath.as_posix(), width=size[0], height=size[1], in_gallery=in_gallery,
    )
    db.session.add(generation)
    db.session.commit()
    return generation


def store_output_file(fetched: FetchedFile, job, model_ref: str, index: int, key: str) -> OutputFile:
    """Keep a non-image output file (video, audio, archive, …) of `job` at
    ``DATA_DIR/outputs/YYYY/MM/<job id>-<index><extension>``; the row is committed."""
    relpath = Path("outputs") / job.created_at.strftime("%Y/%m") / f"{job.id}-{index}{fetched.extension}"
    write_atomic(Path(current_app.config["DATA_DIR"]) / relpath, fetched.data)
    row = OutputFile(user_id=job.user_id, job_id=job.id, model_ref=model_ref, key=key[:200], kind=fetched.kind,
                     content_type=fetched.content_type[:100], path=relpath.as_posix(), size=len(fetched.data))
    db.session.add(row)
    db.session.commit()
    return row


def store_output_text(text: str, job, model_ref: str) -> OutputFile:
    """Keep the text a model returned (its whole output, or the text parts of an object)."""
    row = OutputFile(user_id=job.user_id, job_id=job.id, model_ref=model_ref, key="", kind="text",
                     content_type="text/plain", text=text, size=len(text.encode()))
    db.session.add(row)
    db.session.commit()
    return row
