"""Building the zips and files trainers take, streaming one image at a time.

- `write_training_zip`: images and same-name `.txt` captions at the zip's root — what CivitAI's
  trainer, Replicate's ostris/flux-dev-lora-trainer and ai-toolkit expect.
- `write_kohya_folder_zip`: the same inside `img/{repeats}_{trigger} {class}/`.
- `kohya_metadata_json`: kohya's fine-tuning metadata `{"<stem>": {"caption"|"tags": ...}}`.

An item is `(image_path, arcname_stem, caption)`; a caption of None writes no caption file (the
trainers then auto-caption or leave the image untagged, as the user intended). An empty caption
is left out too (kohya refuses a 0-byte caption file) and named in the result's warnings. Captions
are written as trainers read them: UTF-8 without BOM, blank lines before the text dropped.

Images that need no change are copied byte for byte. An image is re-encoded, one at a time in
memory, when it is resized or converted, and also when trainers would read it wrong as it is:
an EXIF orientation other than 1 (kohya and most trainers ignore the tag and would train on a
sideways image), 16-bit or float pixels (Pillow's `convert("RGB")`, which trainers call, clips
them to white), CMYK, or transparency when a background colour to flatten onto is given
(trainers drop the alpha channel, leaving whatever colour the transparent pixels hold).
Every change made or problem left is named in `ExportResult.warnings`.
"""
import io
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from app import imaging
from app.datasets.tags import apply_trigger, is_tag_caption, unescape_parens

ExportItem = tuple[Path, str, str | None]

_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
_STORED_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass
class ExportResult:
    images: list[tuple[str, str]] = field(default_factory=list)  # (source path, name in zip)
    captions: int = 0
    reencoded: int = 0  # resized or converted instead of copied byte for byte
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (source path, what was done or is left)


def _caption_for_export(caption: str | None, trigger: str | None, strip_escapes: bool) -> str | None:
    if caption is None:
        return None
    if strip_escapes:
        caption = unescape_parens(caption)
    if trigger:
        caption = apply_trigger(caption, trigger)
    lines = caption.removeprefix("\ufeff").split("\n")
    while len(lines) > 1 and not lines[0].strip():
        lines.pop(0)  # kohya trains on the first line only
    return "\n".join(lines)


def first_line(caption: str) -> str:
    """The first line with text: what kohya trains on once blank leading lines are gone."""
    return next((line.strip() for line in caption.split("\n") if line.strip()), "")


def _safe_stem(stem: str) -> str:
    # Everything goes to one folder: path separators and characters Windows refuses become "_".
    cleaned = _UNSAFE_NAME.sub("_", stem).strip().lstrip(".")
    return cleaned or "image"


def _unique_stem(stem: str, taken: set[str]) -> str:
    # Case-insensitive, because the zip may be unpacked on macOS or Windows.
    candidate, n = stem, 2
    while candidate.casefold() in taken:
        candidate, n = f"{stem}_{n}", n + 1
    taken.add(candidate.casefold())
    return candidate


_PLAIN_MODES = ("RGB", "L", "P", "RGBA", "LA", "PA", "1")


def _encode_image(path: Path, max_side: int | None, png_jpeg_only: bool,
                  background: tuple[int, int, int] | None) -> tuple[tuple[bytes, str, list[str]] | None, bool]:
    """((bytes, extension, what was changed) or None to copy as is, whether transparency is kept).

    Decoding goes through `imaging.prepare`, the conversion every other part of Tessera uses.
    """
    with Image.open(path) as image:
        fmt = image.format or ""
        turn = imaging.orientation(image)
        transparent = imaging.has_transparency(image) and imaging.alpha_coverage(image) > 0
        too_big = max_side is not None and max(image.size) > max_side
        wrong_format = png_jpeg_only and fmt not in ("PNG", "JPEG")
        deep = image.mode not in _PLAIN_MODES  # I;16, I, F, CMYK, YCbCr, LAB...
        flatten = transparent and background is not None
        if not (too_big or wrong_format or turn != 1 or deep or flatten):
            return None, transparent
        changes = []
        if turn != 1:
            changes.append(f"turned upright (EXIF orientation {turn})")
        if deep:
            changes.append(f"converted from {image.mode} to 8-bit")
        if flatten:
            changes.append("transparency flattened onto #{:02x}{:02x}{:02x}".format(*background))
        icc = image.info.get("icc_profile") if image.mode != "CMYK" else None
        out = imaging.prepare(image, keep_alpha=not flatten, background=background or imaging.WHITE)
        if too_big:
            scale = max_side / max(out.size)
            size = (max(1, round(out.width * scale)), max(1, round(out.height * scale)))
            out = out.resize(size, Image.Resampling.LANCZOS)
            changes.append(f"resized to {size[0]}×{size[1]}")
        out_format = fmt if fmt in _FORMAT_EXT and not (png_jpeg_only and fmt == "WEBP") else "PNG"
        if out_format == "JPEG" and out.mode == "RGBA":
            out_format = "PNG"  # JPEG cannot keep the alpha the user chose not to flatten
        if wrong_format or out_format != fmt:
            changes.append(f"saved as {out_format}")
        buffer = io.BytesIO()
        if out_format == "JPEG":
            out.save(buffer, "JPEG", quality=95, subsampling=0, icc_profile=icc)
        elif out_format == "WEBP":
            out.save(buffer, "WEBP", quality=95, icc_profile=icc)
        else:
            out.save(buffer, "PNG", icc_profile=icc)
        return (buffer.getvalue(), _FORMAT_EXT[out_format], changes), transparent and not flatten


def _write_items(
    archive: zipfile.ZipFile,
    items: Iterable[ExportItem],
    folder: str,
    *,
    max_side: int | None,
    rename_sequential: bool,
    strip_escapes: bool,
    trigger: str | None,
    caption_ext: str,
    png_jpeg_only: bool,
    background: tuple[int, int, int] | None,
    on_progress: Callable[[int, int], None] | None,
) -> ExportResult:
    items = list(items)
    digits = max(4, len(str(len(items))))
    taken: set[str] = set()
    result = ExportResult()
    for number, (image_path, arcname_stem, caption) in enumerate(items, start=1):
        stem = str(number).zfill(digits) if rename_sequential else _safe_stem(arcname_stem)
        stem = _unique_stem(stem, taken)
        if _write_image(archive, Path(image_path), folder + stem, max_side, png_jpeg_only, background, result):
            text = _caption_for_export(caption, trigger, strip_escapes)
            if text is not None and not text.strip():
                result.warnings.append((str(image_path), "empty caption left out (kohya refuses an empty caption file)"))
            elif text is not None:
                archive.writestr(folder + stem + caption_ext, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
                result.captions += 1
        if on_progress is not None:
            on_progress(number, len(items))
    return result


def _write_image(
    archive: zipfile.ZipFile, path: Path, name_stem: str, max_side: int | None, png_jpeg_only: bool,
    background: tuple[int, int, int] | None, result: ExportResult,
) -> bool:
    """Add one image to the zip; False if the source could not be read (recorded as skipped).

    Source problems (deleted since the scan, corrupt, too large to decode) skip the image;
    errors writing the zip itself are not caught and abort the export.
    """
    try:
        encoded, transparent = _encode_image(path, max_side, png_jpeg_only, background)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        result.skipped.append((str(path), f"Cannot export image: {imaging.open_problem(exc)}"))
        return False
    if encoded is None:
        ext = path.suffix.lower()
        archive.write(path, name_stem + ext, compress_type=_compression(ext))
    else:
        data, ext, changes = encoded
        archive.writestr(name_stem + ext, data, compress_type=_compression(ext))
        result.reencoded += 1
        result.warnings += [(str(path), change) for change in changes]
    if transparent:
        result.warnings.append((str(path), "has transparent pixels; trainers drop the alpha channel "
                                           "(choose a background colour to flatten onto)"))
    result.images.append((str(path), name_stem + ext))
    return True


def _compression(ext: str) -> int:
    # Already-compressed formats are stored; deflating them again costs time and saves nothing.
    return zipfile.ZIP_STORED if ext in _STORED_EXTS else zipfile.ZIP_DEFLATED


def write_training_zip(
    items: Iterable[ExportItem],
    out: str | Path | BinaryIO,
    *,
    max_side: int | None = None,
    rename_sequential: bool = False,
    strip_escapes: bool = False,
    trigger: str | None = None,
    caption_ext: str = ".txt",
    png_jpeg_only: bool = False,
    background: tuple[int, int, int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Zip images with same-name captions at the zip's root.

    `max_side` shrinks larger images (aspect kept, LANCZOS; PNG stays PNG, JPEG stays JPEG at
    quality 95, WebP stays WebP, GIF/BMP become PNG). `png_jpeg_only` converts other formats to
    PNG (CivitAI accepts only png/jpg/jpeg). `rename_sequential` names pairs 0001.png + 0001.txt.
    `trigger` is put first in every caption; `strip_escapes` turns `\\(` back into `(`. Stems
    that collide (also case-insensitively) get `_2`, `_3`. `out` may be a path or a writable
    (even non-seekable) binary file. `background` (an RGB triple) flattens transparent images onto
    that colour; without it they keep their alpha and are named in the warnings. Images with an
    EXIF orientation, 16-bit or CMYK pixels are always re-encoded upright in 8-bit (see the module).
    """
    with zipfile.ZipFile(out, "w") as archive:
        return _write_items(
            archive, items, "", max_side=max_side, rename_sequential=rename_sequential,
            strip_escapes=strip_escapes, trigger=trigger, caption_ext=caption_ext,
            png_jpeg_only=png_jpeg_only, background=background, on_progress=on_progress,
        )


def kohya_folder_name(repeats: int, trigger: str, class_token: str = "") -> str:
    """`10_mychar woman`: kohya reads repeats before the first "_" and the rest as the prompt."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    trigger, class_token = trigger.strip(), class_token.strip()
    if not trigger:
        raise ValueError("A trigger word is needed for a kohya folder")
    if _UNSAFE_NAME.search(trigger + class_token):
        raise ValueError("Trigger and class may not contain / \\ : * ? \" < > |")
    return f"{repeats}_{trigger} {class_token}" if class_token else f"{repeats}_{trigger}"


def write_kohya_folder_zip(
    items: Iterable[ExportItem],
    out: str | Path | BinaryIO,
    repeats: int,
    trigger: str,
    class_token: str = "",
    *,
    max_side: int | None = None,
    rename_sequential: bool = False,
    strip_escapes: bool = False,
    caption_ext: str = ".txt",
    png_jpeg_only: bool = False,
    background: tuple[int, int, int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Zip in kohya's layout `img/{repeats}_{trigger} {class}/`, trigger first in captions.

    Options as for `write_training_zip`. kohya's own default caption extension is `.caption`;
    `.txt` is kept as default because kohya is usually run with `--caption_extension=.txt`.
    """
    folder = f"img/{kohya_folder_name(repeats, trigger, class_token)}/"
    with zipfile.ZipFile(out, "w") as archive:
        return _write_items(
            archive, items, folder, max_side=max_side, rename_sequential=rename_sequential,
            strip_escapes=strip_escapes, trigger=trigger, caption_ext=caption_ext,
            png_jpeg_only=png_jpeg_only, background=background, on_progress=on_progress,
        )


def kohya_metadata_json(
    items: Iterable[ExportItem], *, trigger: str | None = None, strip_escapes: bool = False
) -> dict[str, dict[str, str]]:
    """kohya fine-tuning metadata keyed by `arcname_stem`.

    kohya trains on `caption + ", " + tags` when both are present, so each image gets one key:
    "tags" for a tag-list caption (what its WD14 merge script writes) or "caption" for natural
    language (what its BLIP merge writes). Only the first line with text is used (kohya trains on
    one line; a blank line before the text is a slip, not the caption). Images without a caption,
    or with an empty one, are left out.
    """
    metadata: dict[str, dict[str, str]] = {}
    for _, stem, caption in items:
        text = _caption_for_export(caption, trigger, strip_escapes)
        line = first_line(text) if text is not None else ""
        if not line:
            continue
        metadata[stem] = {"tags" if is_tag_caption(line) else "caption": line}
    return metadata
