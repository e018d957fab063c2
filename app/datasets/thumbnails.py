"""Grid thumbnails, cached under DATA_DIR/thumbs by content hash (identical files share one)."""
import os
import uuid
from pathlib import Path

from PIL import Image

from app import imaging

THUMB_SIDE = 256


def thumb_relpath(content_hash: str) -> str:
    """Where the thumbnail of content `content_hash` lives, relative to DATA_DIR."""
    return f"thumbs/{content_hash[:2]}/{content_hash}-{THUMB_SIDE}.webp"


def make_thumbnail(source: Path, dest: Path, side: int = THUMB_SIDE) -> None:
    """Write a WebP thumbnail of `source` to `dest`, atomically.

    Decoded with `imaging.prepare`: upright per EXIF, 16-bit greys scaled (not clipped to white),
    transparency kept.
    """
    with Image.open(source) as opened:
        # JPEG decodes straight at 1/2..1/8 scale. Pillow's thumbnail() stops at twice the target
        # for quality; a grid thumbnail does not need that, so decode to just above the target.
        image = imaging.prepare(opened, draft=(side, side))
        image.thumbnail((side, side), Image.Resampling.BILINEAR, reducing_gap=None)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGB")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            image.save(tmp, "WEBP", quality=80, method=2)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
