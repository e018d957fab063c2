"""Training a LoRA on Replicate, the parts that need no web request: the pre-flight check, the training
zip, the trainer's weights archive, and the loss chart.

Facts about the trainer come from ostris/flux-dev-lora-trainer (ai-toolkit): it reads a zip with images
and same-name ``.txt`` captions at its root, auto-captions images without a caption file when
``autocaption`` is on, puts ``trigger_word`` into captions that lack it, trains at the comma-separated
``resolution`` sides (smaller images are upscaled into the buckets), and writes its weights as
``lora.safetensors`` inside a .tar (some trainers: a .zip, or the bare file).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.atomic import write_atomic
from app.datasets import ImageFacts, write_training_zip

MIN_IMAGES = 10  # the trainer's own advice: "We recommend a minimum of 10 images"
# The trainer opens these with Pillow; anything else is converted to PNG in the zip.
TRAINER_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
# An image whose shorter side is under this share of the smallest training resolution is upscaled so
# much that it teaches blur.
FAR_BELOW = 0.5
MAX_WEIGHTS_BYTES = 2 * 1024 ** 3  # a rank-128 FLUX LoRA is ~1.2 GB; anything bigger is not a LoRA
_SAFETENSORS_HEADER_MAX = 100 * 1024 * 1024


@dataclass(frozen=True)
class Issue:
    level: str  # "error" blocks the training; "warning" may be accepted
    message: str
    image_id: int | None = None
    relpath: str | None = None


@dataclass
class PreflightReport:
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    image_count: int = 0  # images that will be sent
    caption_count: int = 0
    convert_count: int = 0  # images converted to PNG because the trainer cannot read their format

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_resolutions(text: Any) -> list[int]:
    """"512,768,1024" -> [512, 768, 1024]; anything unreadable is left out."""
    sides = []
    for part in str(text or "").replace(";", ",").split(","):
        part = part.strip()
        if part.isdigit() and int(part) > 0:
            sides.append(int(part))
    return sorted(set(sides))


def _mentions(caption: str, trigger: str) -> bool:
    return trigger.casefold() in caption.casefold() or "[trigger]" in caption


def preflight(images: Iterable[ImageFacts], *, trigger: str, resolutions: Sequence[int] = (512,),
              autocaption: bool = False, add_trigger: bool = True, min_images: int = MIN_IMAGES,
              max_listed: int = 200) -> PreflightReport:
    """Check what would be sent before anything is paid for.

    Errors (block): an image that could not be read, a caption file that is empty (the trainer would
    train the image on nothing), an image without caption when autocaption is off, no image at all.
    Warnings: a caption lacking the trigger word, fewer than ``min_images`` images, byte-identical
    duplicates, an image whose shorter side is below half the smallest training resolution.
    At most ``max_listed`` issues of each level are listed one by one; the rest are counted in one more.
    """
    report = PreflightReport()
    trigger = (trigger or "").strip()
    smallest = min(resolutions) if resolutions else None
    seen_hashes: dict[str, ImageFacts] = {}
    lacking_trigger, extra = 0, {"error": 0, "warning": 0}

    def add(level: str, message: str, image: ImageFacts | None = None) -> None:
        target = report.errors if level == "error" else report.warnings
        if len(target) >= max_listed:
            extra[level] += 1
            return
        target.append(Issue(level, message, image.id if image else None, image.relpath if image else None))

    for image in images:
        if image.error:
            add("error", f"The trainer cannot read this image: {image.error}", image)
            continue
        report.image_count += 1
        if image.format and image.format.upper() not in TRAINER_FORMATS:
            report.convert_count += 1
        if image.caption is None:
            if not autocaption:
                add("error", "No caption file, and autocaption is off: write a caption or turn autocaption on.",
                    image)
        elif not image.caption.strip():
            add("error", "The caption file is empty: write a caption or delete the empty file.", image)
        else:
            report.caption_count += 1
            if trigger and not _mentions(image.caption, trigger):
                lacking_trigger += 1
                add("warning", f"The caption lacks the trigger word “{trigger}”"
                    + (" (it will be put first in the zip)." if add_trigger else "."), image)
        if image.content_hash:
            first = seen_hashes.setdefault(image.content_hash, image)
            if first is not image:
                add("warning", f"Identical to {first.relpath}: the same picture counts twice.", image)
        if smallest and image.width and image.height and min(image.width, image.height) < smallest * FAR_BELOW:
            add("warning", f"{image.width}×{image.height} is far below the training resolution ({smallest}); "
                "it will be upscaled and teach blur.", image)
    if report.image_count == 0:
        add("error", "There is no readable image to train on.")
    elif report.image_count < min_images:
        add("warning", f"Only {report.image_count} image{'s' if report.image_count != 1 else ''}: the trainer "
            f"recommends at least {min_images}.")
    for level, count in extra.items():
        if count:
            (report.errors if level == "error" else report.warnings).append(
                Issue(level, f"… and {count:,} more like these."))
    return report


# --- the training zip ---------------------------------------------------------------------------


def build_training_zip(items: Sequence[tuple[Path, str, str | None]], dest: Path, *, trigger: str | None, strip_escapes: bool,
                       convert_formats: bool, on_progress: Callable[[int, int], None] | None = None):
    """Write the trainer's zip to ``dest`` as the dataset export does (images and .txt at the root,
    ``trigger`` put first in every caption when given, ``\\(`` escapes undone when ``strip_escapes``),
    streaming one image at a time: memory stays flat however large the dataset. The file appears at
    ``dest`` only when complete. ``convert_formats`` turns formats the trainer cannot read into PNG.
    Returns the export's result (images written, captions, images skipped with why)."""
    # Not fsynced: the zip is uploaded and deleted within minutes, and a crash only means building it again.
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        with open(tmp, "wb") as out:
            result = write_training_zip(items, out, trigger=trigger or None, strip_escapes=strip_escapes,
                                        png_jpeg_only=convert_formats, on_progress=on_progress)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def zip_captions(path: Path) -> dict[str, str]:
    """Image name in the zip -> the caption sent with it ("" when none): the snapshot of what a LoRA
    was trained on, read back from the zip itself so it is exactly what the trainer got."""
    captions: dict[str, str] = {}
    with zipfile.ZipFile(path) as archive:
        names = {info.filename for info in archive.infolist()}
        for name in sorted(names):
            stem, dot, ext = name.rpartition(".")
            if not dot or ext.lower() == "txt":
                continue
            text_name = f"{stem}.txt"
            captions[name] = archive.read(text_name).decode("utf-8") if text_name in names else ""
    return captions


# --- the trained weights ------------------------------------------------------------------------


class WeightsError(ValueError):
    """The trainer's output holds no usable .safetensors; the message says what was found."""


def check_safetensors(path: Path) -> dict[str, Any]:
    """The header of a .safetensors file (a little-endian u64 length, then that much JSON), or raise
    WeightsError. Reads only the header, so it is cheap for a 1 GB file."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise WeightsError("The weights file is too short to be a .safetensors file.")
            (length,) = struct.unpack("<Q", raw)
            if not 2 <= length <= _SAFETENSORS_HEADER_MAX:
                raise WeightsError("The weights file is not a .safetensors file (its header length is wrong).")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"The weights file is not a .safetensors file: {exc}") from exc
    if not isinstance(header, dict) or not any(key != "__metadata__" for key in header):
        raise WeightsError("The .safetensors file holds no tensors.")
    return header


def extract_weights(archive: Path, dest: Path) -> int:
    """Copy the LoRA's .safetensors out of the trainer's output (a .tar, a .zip or the bare file) to
    ``dest``, streamed; returns its size. Prefers ``lora.safetensors`` when several are inside."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".safetensors")]
                member = _pick(members, lambda m: m.name)
                source = tar.extractfile(member)
                if source is None:
                    raise WeightsError("The weights archive's .safetensors cannot be read.")
                with source, open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                infos = [i for i in zipped.infolist() if not i.is_dir() and i.filename.lower().endswith(".safetensors")]
                info = _pick(infos, lambda i: i.filename)
                with zipped.open(info) as source, open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
        else:
            shutil.copyfile(archive, tmp)
        check_safetensors(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
        return dest.stat().st_size
    except (tarfile.TarError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"The trainer's output archive is damaged: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _pick(members: list, name_of: Callable[[Any], str]):
    if not members:
        raise WeightsError("The trainer's output holds no .safetensors file.")
    preferred = [m for m in members if name_of(m).rsplit("/", 1)[-1] == "lora.safetensors"]
    return (preferred or members)[0]


# --- progress -----------------------------------------------------------------------------------


def loss_chart_svg(points: Sequence[tuple[int, float]], *, total: int | None = None, width: int = 320,
                   height: int = 96) -> str:
    """A small loss-over-steps line chart as inline SVG markup (no script, no style attribute, so it
    passes a strict CSP). ``points`` are (step, loss); at most 400 are drawn, evenly thinned. Returns
    "" when there are fewer than two points."""
    if len(points) < 2:
        return ""
    if len(points) > 400:
        stride = len(points) / 400
        points = [points[int(i * stride)] for i in range(400)] + [points[-1]]
    pad = 4
    last_step = max(total or 0, points[-1][0], 1)
    losses = [loss for _, loss in points]
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    coords = " ".join(
        f"{pad + (width - 2 * pad) * step / last_step:.1f},{pad + (height - 2 * pad) * (high - loss) / span:.1f}"
        for step, loss in points)
    label = f"Loss from {points[0][1]:.3g} at step {points[0][0]} to {points[-1][1]:.3g} at step {points[-1][0]}"
    return (f'<svg class="loss-chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{label}"><title>{label}</title>'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="currentColor" '
            f'stroke-opacity="0.25"/><polyline points="{coords}" fill="none" stroke="currentColor" '
            f'stroke-width="1.5"/></svg>')


def training_facts(training_input: dict[str, Any], image_count: int) -> list[tuple[str, str]]:
    """The cost-relevant facts of a training, as (label, value) rows: steps, rank, images, batch, epochs.
    Replicate bills trainings by GPU time, which grows with steps × batch size × resolution."""
    steps = training_input.get("steps")
    batch = training_input.get("batch_size") or 1
    facts = [("Images", f"{image_count:,}")]
    if steps is not None:
        facts.append(("Steps", f"{int(steps):,}"))
    if training_input.get("lora_rank") is not None:
        facts.append(("LoRA rank", str(training_input["lora_rank"])))
    if batch != 1:
        facts.append(("Batch size", str(batch)))
    if training_input.get("resolution"):
        facts.append(("Resolution", str(training_input["resolution"])))
    if steps and image_count:
        facts.append(("Epochs", f"≈ {int(steps) * int(batch) / image_count:.1f} (each image seen this often)"))
    return facts


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(path: Path, data: Any) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))

