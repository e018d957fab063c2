"""Images entering through a form: checked, size-limited, and kept under DATA_DIR/uploads."""
from __future__ import annotations

import io
import uuid
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.atomic import write_atomic

ACCEPTED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}


class UploadRejected(ValueError):
    pass


def read_image_upload(storage, max_bytes: int) -> tuple[bytes, str]:
    """Return (bytes, Pillow format) of an uploaded PNG/JPEG/WebP, or raise UploadRejected."""
    data = storage.read(max_bytes + 1)
    if not data:
        raise UploadRejected("The file is empty.")
    if len(data) > max_bytes:
        raise UploadRejected(f"The image is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except Image.DecompressionBombError:
        raise UploadRejected("The image has too many pixels to process safely.") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise UploadRejected("The file is not a readable image.") from None
    if image_format not in ACCEPTED_FORMATS:
        raise UploadRejected(f"{image_format} images are not accepted; use PNG, JPEG or WebP.")
    return data, image_format


def store_upload(data_dir: Path, data: bytes, image_format: str) -> str:
    """Keep the upload under a fresh name; returns the path relative to the data folder."""
    relpath = Path("uploads") / f"{uuid.uuid4().hex}{ACCEPTED_FORMATS[image_format]}"
    write_atomic(data_dir / relpath, data)
    return relpath.as_posix()
