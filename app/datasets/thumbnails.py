"""Grid thumbnails, cached under DATA_DIR/thumbs by content hash (identical files share one)."""
import os
import uuid
from pathlib import Path

from PIL import Image, ImageOps

THUMB_SIDE = 256


def thumb_relpath(content_hash: str) -> str:
    """Where the thumbnail of content `content_hash` lives, relative to DATA_DIR."""
    return f"thumbs/{content_hash[:2]}/{content_hash}-{THUMB_SIDE}.webp"


def make_thumbnail(source: Path, dest: Path, side: int = THUMB_SIDE) -> None:
    """Write a WebP thumbnail of `source` (upright per EXIF) to `dest`, atomically."""
    with Image.open(source) as image:
        # JPEG decodes straight at 1/2..1/8 scale. Pillow's thumbnail() stops at twice the target
        # for quality; a grid thumbnail does not need that, so decode to just above the target.
        image.draft("RGB", (side, side))
        image = ImageOps.exif_transpose(image)
        image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=None)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if image.has_transparency_data else "RGB")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            image.save(tmp, "WEBP", quality=80, method=2)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
