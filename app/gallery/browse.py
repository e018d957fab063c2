"""Browsing a user's gallery: search by prompt, filter by model, neighbours for ←/→, thumbnails, the
inputs of one image as a person reads them, and deleting an image with its files.

No Flask: callers pass the user's id and DATA_DIR. Newest first everywhere (by id, which follows
creation order).
"""
from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import Select, func

from app.extensions import db
from app.gallery.models import Generation

THUMB_SIDE = 384  # twice the grid's ~180 px cells, sharp on HiDPI screens
MAX_QUERY_WORDS = 8
MAX_QUERY_LENGTH = 200


@dataclass(frozen=True)
class GalleryFilter:
    """What the gallery shows: words that must all appear in the prompt (any case), and one model."""

    q: str = ""
    model: str = ""

    @classmethod
    def from_args(cls, args) -> GalleryFilter:
        q = " ".join(str(args.get("q", "")).split())[:MAX_QUERY_LENGTH]
        return cls(q=q, model=str(args.get("model", "")).strip()[:200])

    def as_args(self) -> dict[str, str]:
        """The filter as URL arguments (empty ones left out), for links that keep it."""
        return {key: value for key, value in (("q", self.q), ("model", self.model)) if value}

    def apply(self, query: Select, user_id: int) -> Select:
        query = query.where(Generation.user_id == user_id, Generation.in_gallery)
        for word in self.q.split()[:MAX_QUERY_WORDS]:
            # LIKE, with its wildcards escaped: the user's % and _ are literal characters.
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(Generation.prompt.ilike(f"%{escaped}%", escape="\\"))
        if self.model:
            query = query.where(Generation.model_ref == self.model)
        return query


def page_of(user_id: int, gallery_filter: GalleryFilter, page: int, page_size: int) -> tuple[list[Generation], int, bool]:
    """(images on page `page` (1-based), how many match in all, whether an older page exists)."""
    query = gallery_filter.apply(db.select(Generation), user_id).order_by(Generation.id.desc())
    rows = db.session.scalars(query.offset((page - 1) * page_size).limit(page_size + 1)).all()
    total = db.session.scalar(gallery_filter.apply(db.select(func.count(Generation.id)), user_id))
    return rows[:page_size], total or 0, len(rows) > page_size


def neighbours(user_id: int, generation: Generation, gallery_filter: GalleryFilter) -> tuple[int | None, int | None]:
    """(the next newer image's id, the next older image's id) within the filter, None at either end."""
    base = gallery_filter.apply(db.select(Generation.id), user_id)
    newer = db.session.scalar(base.where(Generation.id > generation.id).order_by(Generation.id.asc()).limit(1))
    older = db.session.scalar(base.where(Generation.id < generation.id).order_by(Generation.id.desc()).limit(1))
    return newer, older


def models_used(user_id: int) -> list[str]:
    """The model refs the user's gallery images were made with, for the model filter."""
    return list(db.session.scalars(
        db.select(Generation.model_ref).where(Generation.user_id == user_id, Generation.in_gallery)
        .group_by(Generation.model_ref).order_by(Generation.model_ref)))


def cache_key(generation: Generation) -> str:
    """A short key of the image's file: in URLs served as immutable, so an id SQLite hands out again
    after a delete never shows the deleted image from a browser's cache."""
    return hashlib.blake2b(generation.path.encode(), digest_size=6).hexdigest()


def thumbnail_relpath(generation: Generation) -> str:
    """Where the grid thumbnail of `generation` lives, relative to DATA_DIR."""
    return (Path("thumbs") / Path(generation.path).with_suffix("")).as_posix() + f"-{THUMB_SIDE}.webp"


def ensure_thumbnail(generation: Generation, data_dir: Path) -> str | None:
    """Make the WebP thumbnail (longest side THUMB_SIDE, aspect kept) unless it exists; returns its
    path relative to DATA_DIR, or None when the image file is missing or unreadable."""
    relpath = thumbnail_relpath(generation)
    dest = data_dir / relpath
    if dest.is_file():
        return relpath
    source = data_dir / generation.path
    try:
        with Image.open(source) as image:
            image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                image.save(tmp, "WEBP", quality=82, method=4)
                os.replace(tmp, dest)  # two requests racing both write a whole file; one wins
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, Image.DecompressionBombError):
        return None
    return relpath


def delete_generation(generation: Generation, data_dir: Path) -> None:
    """Remove the image: its row, its PNG and its thumbnail. Canvas variations made from it keep
    their own files (their link to it becomes NULL); a job's result simply no longer lists it."""
    files = [data_dir / generation.path, data_dir / thumbnail_relpath(generation)]
    db.session.delete(generation)
    db.session.commit()
    for path in files:
        path.unlink(missing_ok=True)


# Inputs shown on their own rather than in the settings list.
_SHOWN_APART = {"prompt", "negative_prompt", "seed"}


def describe_inputs(params: dict) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """(negative prompt, [(input, value)], [(LoRA input, value)]) of an image's stored model input, in
    the order the model got them. An input whose name mentions LoRA (``lora_weights``, ``lora_scale``,
    ``extra_lora``, ``hf_lora``…, as FLUX LoRA models name them) is listed under LoRA."""
    negative = str(params.get("negative_prompt") or "")
    inputs, loras = [], []
    for name, value in params.items():
        if name in _SHOWN_APART:
            continue
        (loras if "lora" in name.lower() else inputs).append((name, _readable(value)))
    return negative, inputs, loras


def _readable(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "(model default)"
    if isinstance(value, list):
        return ", ".join(_readable(item) for item in value) or "(none)"
    text = str(value)
    if text.startswith("data:"):
        return "(an uploaded file)"
    return text if len(text) <= 300 else text[:300] + "…"
