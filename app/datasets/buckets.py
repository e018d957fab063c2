"""Aspect-ratio buckets: the size each image is trained at, and crops that choose what is kept.

Trainers do not train on an image as it is: they put it in a "bucket" (a width × height close
to the training resolution's area with the image's aspect ratio), scale it to cover the bucket
and crop the rest away. Which bucket an image lands in decides what is cropped, so the dataset
view shows it, and the crop tool lets the user pick the part kept instead of the trainer.

Rules, from the trainers' own code:

- kohya sd-scripts (`library/model_util.py make_bucket_resolutions`, `library/train_util.py
  BucketManager.select_bucket`, defaults `--min_bucket_reso 256 --bucket_reso_steps 64`):
  buckets are, for every width from `min_size` to `max_size` in `steps`, that width with the
  largest height (a multiple of `steps`, at most `max_size`) whose area fits `resolution²`, both
  ways round, plus the square. An image whose exact size is a bucket uses it; otherwise the
  bucket with the closest aspect ratio (the first in sorted order on a tie). The image is scaled
  to cover the bucket (height matched when it is wider than the bucket, else width) and
  centre-cropped (kohya's default; `--random_crop` moves the crop each epoch).
- ostris ai-toolkit (`toolkit/buckets.py get_bucket_for_image_size`, `bucket_tolerance` 64 in
  `toolkit/config_modules.py`): the SDXL bucket list scaled from 1024 to the training resolution,
  or to the image's own resolution (√(width × height)) when that is smaller — ai-toolkit never
  upscales — each side floored to a multiple of 64; the bucket chosen is the one that crops the
  fewest pixels after scaling the image to cover it. Crops are centred.
"""
from __future__ import annotations

import math
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app import imaging

# ai-toolkit's SDXL list at 1024 (toolkit/buckets.py resolutions_1024), landscape half; the
# portrait half is the same sizes turned round, and 1024×1024 is the square.
_AI_TOOLKIT_LANDSCAPE = (
    (2048, 512), (1984, 512), (1920, 512), (1856, 512), (1792, 576), (1728, 576), (1664, 576), (1600, 640),
    (1536, 640), (1472, 704), (1408, 704), (1344, 704), (1344, 768), (1280, 768), (1216, 832), (1152, 832),
    (1152, 896), (1088, 896), (1088, 960), (1024, 960),
)


@dataclass(frozen=True)
class Trainer:
    """A trainer's bucketing settings."""

    key: str
    label: str
    rule: str  # "kohya" or "ai-toolkit"
    resolution: int
    min_size: int = 256
    max_size: int = 1024
    steps: int = 64


TRAINERS = {
    t.key: t for t in (
        Trainer("kohya-sdxl", "kohya, SDXL (1024, buckets 256–2048)", "kohya", 1024, 256, 2048, 64),
        Trainer("kohya-sd15", "kohya, SD 1.5 (512, buckets 256–1024)", "kohya", 512, 256, 1024, 64),
        Trainer("ai-toolkit-1024", "ai-toolkit / Replicate FLUX trainer (1024)", "ai-toolkit", 1024, steps=64),
        Trainer("ai-toolkit-512", "ai-toolkit (512)", "ai-toolkit", 512, steps=64),
    )
}
DEFAULT_TRAINER = "kohya-sdxl"


@dataclass(frozen=True)
class Bucket:
    width: int
    height: int
    scaled: tuple[int, int]  # the image's size once scaled to cover the bucket
    crop: tuple[int, int, int, int]  # what is kept, (left, top, right, bottom) in the image's own pixels

    @property
    def label(self) -> str:
        return f"{self.width}×{self.height}"


def kohya_resolutions(resolution: int, min_size: int = 256, max_size: int = 1024, steps: int = 64) -> list[tuple[int, int]]:
    """kohya's bucket list for a square training resolution, sorted (see module doc)."""
    max_area = (resolution // steps) * (resolution // steps)
    sizes = {(int(math.sqrt(max_area)) * steps,) * 2}
    size = min_size
    while size <= max_size:
        width = size
        height = min(max_size, (max_area // (width // steps)) * steps)
        sizes.add((width, height))
        sizes.add((height, width))
        size += steps
    return sorted(sizes)


def ai_toolkit_resolutions(resolution: int, steps: int = 64) -> list[tuple[int, int]]:
    """ai-toolkit's bucket list scaled to `resolution`, each side floored to a multiple of `steps`."""
    scale = resolution / 1024
    base = [(1024, 1024), *_AI_TOOLKIT_LANDSCAPE, *((h, w) for w, h in _AI_TOOLKIT_LANDSCAPE)]
    out = []
    for w, h in base:
        w, h = int(w * scale), int(h * scale)
        out.append((w - w % steps, h - h % steps))
    return out


def _cover(width: int, height: int, bucket: tuple[int, int], match_height: bool) -> tuple[int, int]:
    scale = bucket[1] / height if match_height else bucket[0] / width
    return int(width * scale + 0.5), int(height * scale + 0.5)


def _centre_crop(width: int, height: int, bucket: tuple[int, int], scaled: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of the original image (its own pixels) the centred bucket crop keeps."""
    keep_w = min(width, round(bucket[0] * width / scaled[0]))
    keep_h = min(height, round(bucket[1] * height / scaled[1]))
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return left, top, left + keep_w, top + keep_h


def bucket_for(width: int, height: int, trainer: Trainer | str = DEFAULT_TRAINER) -> Bucket:
    """The bucket an upright `width` × `height` image lands in with `trainer`'s rule.

    Raises ValueError for a non-positive size or an unknown trainer key.
    """
    if isinstance(trainer, str):
        if trainer not in TRAINERS:
            raise ValueError(f"Unknown trainer: {trainer}")
        trainer = TRAINERS[trainer]
    if width <= 0 or height <= 0:
        raise ValueError("An image size must be positive")
    aspect = width / height
    if trainer.rule == "kohya":
        sizes = kohya_resolutions(trainer.resolution, trainer.min_size, trainer.max_size, trainer.steps)
        if (width, height) in sizes:
            chosen = (width, height)
        else:
            chosen = min(sizes, key=lambda s: abs(s[0] / s[1] - aspect))  # first minimum, like argmin
        scaled = _cover(width, height, chosen, match_height=aspect > chosen[0] / chosen[1])
    else:
        own = int((width * height) ** 0.5)
        sizes = ai_toolkit_resolutions(min(trainer.resolution, own), trainer.steps)
        sizes = [s for s in sizes if s[0] > 0 and s[1] > 0] or [(trainer.steps, trainer.steps)]
        if (width, height) in sizes:
            chosen = (width, height)
        else:
            def removed(size: tuple[int, int]) -> float:
                scale = max(size[0] / width, size[1] / height)
                new_w, new_h = int(width * scale), int(height * scale)
                return (new_w - size[0]) * new_h + (new_h - size[1]) * new_w
            chosen = min(sizes, key=removed)
        scale = max(chosen[0] / width, chosen[1] / height)
        scaled = (max(chosen[0], int(width * scale + 0.5)), max(chosen[1], int(height * scale + 0.5)))
    return Bucket(chosen[0], chosen[1], scaled, _centre_crop(width, height, chosen, scaled))


def histogram(sizes: Iterable[tuple[int, int]], trainer: Trainer | str = DEFAULT_TRAINER) -> list[tuple[str, int]]:
    """(bucket label, image count) for upright image sizes, most filled bucket first."""
    counts = Counter(bucket_for(w, h, trainer).label for w, h in sizes if w and h)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def focus_crop(width: int, height: int, bucket: tuple[int, int], focus: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int]:
    """The largest box of `bucket`'s aspect ratio inside the image, centred on `focus`.

    `focus` is (left, top, right, bottom) in the image's pixels (the part the user wants kept);
    None centres the box (what kohya and ai-toolkit do). The box is moved, never shrunk, to stay
    inside the image, so a focus near an edge keeps the edge.
    """
    target = bucket[0] / bucket[1]
    if width / height > target:
        box_w, box_h = round(height * target), height
    else:
        box_w, box_h = width, round(width / target)
    box_w, box_h = max(1, min(box_w, width)), max(1, min(box_h, height))
    if focus is None:
        cx, cy = width / 2, height / 2
    else:
        left, top, right, bottom = focus
        cx, cy = (left + right) / 2, (top + bottom) / 2
    left = int(round(min(max(cx - box_w / 2, 0), width - box_w)))
    top = int(round(min(max(cy - box_h / 2, 0), height - box_h)))
    return left, top, left + box_w, top + box_h


def crop_to_new_file(source: Path, box: tuple[int, int, int, int], *, size: tuple[int, int] | None = None,
                     folder: Path | None = None, number: bool = True) -> Path:
    """Write the `box` (upright pixels) of `source`, scaled to `size` if given, as a NEW file.

    The new file is `<stem>-crop-<w>x<h><ext>` in `folder` (default: beside the original, which is
    never written); a taken name gets `-2`, `-3`… or, with `number=False`, raises FileExistsError
    (a bulk crop run again skips what it wrote before). JPEG stays JPEG (quality 95), anything
    else becomes PNG. Returns the new path. Raises ValueError for a box outside the image, OSError
    on I/O errors, Image.DecompressionBombError for an image over the pixel limit.
    """
    source = Path(source)
    with Image.open(source) as opened:
        fmt = opened.format
        icc = opened.info.get("icc_profile")
        image = imaging.prepare(opened)
        image.load()  # prepare returns the opened image itself when nothing had to change
    left, top, right, bottom = box
    if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
        raise ValueError(f"The crop box {box} is outside the {image.width}×{image.height} image")
    out = image.crop(box)
    if size is not None:
        out = out.resize(size, Image.Resampling.LANCZOS)
    jpeg = fmt == "JPEG" and out.mode in ("RGB", "L")
    ext = ".jpg" if jpeg else ".png"
    stem = f"{source.stem}-crop-{out.width}x{out.height}"
    folder = Path(folder) if folder is not None else source.parent
    target, n = folder / (stem + ext), 2
    while target.exists():
        if not number:
            raise FileExistsError(f"{target.name} exists already")
        target, n = folder / f"{stem}-{n}{ext}", n + 1
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if jpeg:
            out.save(tmp, "JPEG", quality=95, subsampling=0, icc_profile=icc)
        else:
            out.save(tmp, "PNG", icc_profile=icc)
        # link() refuses to replace a file made meanwhile: the new name is never anyone's file.
        while True:
            try:
                os.link(tmp, target)
                break
            except FileExistsError:
                if not number:
                    raise
                target, n = folder / f"{stem}-{n}{ext}", n + 1
    finally:
        tmp.unlink(missing_ok=True)
    return target
