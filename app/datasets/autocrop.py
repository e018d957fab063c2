"""Automatic crops to a training bucket that keep the subject: face-aware, else content-aware.

A trainer centre-crops every image to its bucket (kohya's default, ai-toolkit's only way), which
cuts the head off a portrait photographed off-centre. The automatic crop proposes instead the
largest box of the bucket's aspect ratio (what the trainer would keep, moved) that

1. keeps every face it finds (frontal, else in profile) whole, with room for the hair above and the chin below — at least the
   largest face, the one a character or person LoRA is trained on (`face_cut` says when not even
   that fits, which only happens with extreme buckets);
2. otherwise, and within what the faces allow, covers the most "energy": colour that stands out from
   the image's border (the background, in most dataset pictures) plus edge density, so an
   illustration's character on a plain or painted background is kept where a photo face detector
   finds nothing (anime faces are not what OpenCV's cascades were trained on);
3. centres that energy in the box, and is the centred crop when the image is uniform.

Faces come from OpenCV's Haar cascades (frontal, and profile both ways round), shipped in the
opencv-python-headless 4.x wheels (`cv2.data.haarcascades`; the 5.0 wheel ships none, hence the
`<5` pin in pyproject.toml). The analysis runs on a copy at most `ANALYSIS_SIDE` pixels long, so a
40 MP photo costs what a 0.3 MP one does once decoded (JPEGs are decoded at reduced scale).

Plain functions, no Flask.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from app import imaging
from app.datasets.buckets import focus_crop

ANALYSIS_SIDE = 640  # faces of 4% of the image's short side are still ~24 px here
ENERGY_SIDE = 256  # the energy map needs no more to place a box
# Room kept around a face, in face heights/widths: hair above, chin and neck below, ears beside.
FACE_MARGIN = {"top": 0.6, "bottom": 0.45, "side": 0.35}
_CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml")
CACHED = 32  # analyses kept per process (each ~0.3 MB): the crop tool asks again per bucket change
_local = threading.local()  # a CascadeClassifier is not safe to share between threads
_cache: OrderedDict[tuple, "Analysis"] = OrderedDict()
_cache_lock = threading.Lock()

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Analysis:
    """What the automatic crop knows of one upright image.

    `faces` are (left, top, right, bottom) in the image's own pixels, largest first; `energy` is a
    float32 map (rows × columns) of the image at `scale` map pixels per image pixel.
    """

    width: int
    height: int
    faces: tuple[Box, ...]
    energy: np.ndarray
    scale: float


@dataclass(frozen=True)
class AutoCrop:
    """A proposed crop: `box` (left, top, right, bottom) in image pixels, of the bucket's aspect."""

    box: Box
    method: str  # "face" (placed around faces found) or "content" (placed on the energy)
    faces: tuple[Box, ...]
    face_cut: bool  # the largest face does not fit in the box whole (an extreme bucket)

    @property
    def note(self) -> str:
        """One sentence for the user saying how the box was placed."""
        if self.face_cut:
            return "Face found, but this bucket is too narrow to keep it whole: the box is centred on it."
        if self.method == "face":
            n = len(self.faces)
            return f"{n} face{'s' if n != 1 else ''} found: the box keeps {'it' if n == 1 else 'the largest'} whole."
        return "No face found: the box is placed on the part that stands out (colour and detail)."


def _cascades() -> list[cv2.CascadeClassifier]:
    cascades = getattr(_local, "cascades", None)
    if cascades is None:
        cascades = []
        for name in _CASCADES:
            cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
            if cascade.empty():  # a wheel without the cascade files: content-aware only
                continue
            cascades.append(cascade)
        _local.cascades = cascades
    return cascades


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area (0–1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / max(smaller, 1)


def find_faces(grey: np.ndarray) -> list[Box]:
    """Faces in an 8-bit grey array (rows × columns), as boxes in its pixels, largest first.

    Frontal faces, else profiles facing either way; overlapping detections are merged into the
    larger. Empty when the OpenCV build ships no cascades.
    """
    height, width = grey.shape
    short = min(width, height)
    if short < 24:
        return []
    equalised = cv2.equalizeHist(grey)
    min_side = max(24, int(short * 0.04))
    found: list[Box] = []
    for n, cascade in enumerate(_cascades()):
        if n > 0 and found:
            break  # profiles cost three times a frontal pass: looked for only when no face looks at us
        passes = [(equalised, False)] if n == 0 else [(equalised, False), (cv2.flip(equalised, 1), True)]
        for pixels, mirrored in passes:
            hits = cascade.detectMultiScale(pixels, scaleFactor=1.1 if n == 0 else 1.2, minNeighbors=5,
                                            minSize=(min_side, min_side))
            for x, y, w, h in (hits if len(hits) else []):
                x = width - x - w if mirrored else x
                found.append((int(x), int(y), int(x + w), int(y + h)))
    found.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    merged: list[Box] = []
    for box in found:
        if all(_overlap(box, kept) < 0.5 for kept in merged):
            merged.append(box)
    return merged


def energy_map(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """How much each pixel belongs to a subject, 0–1 (float32, same rows × columns as `rgb`).

    Half colour distinctiveness (distance in CIELAB from the median colour of the image's border),
    half edge density (Sobel magnitude of lightness, blurred into regions); transparent pixels
    (`alpha` 0–255) count as background.
    """
    height, width = rgb.shape[:2]
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab = cv2.GaussianBlur(lab, (0, 0), 1.5)
    band = max(1, round(min(width, height) * 0.05))
    border = np.concatenate([lab[:band].reshape(-1, 3), lab[-band:].reshape(-1, 3),
                             lab[:, :band].reshape(-1, 3), lab[:, -band:].reshape(-1, 3)])
    if alpha is not None:  # the background colour is that of the opaque border pixels, if any
        opaque = np.concatenate([alpha[:band].ravel(), alpha[-band:].ravel(), alpha[:, :band].ravel(), alpha[:, -band:].ravel()]) > 127
        border = border[opaque] if opaque.any() else border
    distinct = np.linalg.norm(lab - np.median(border, axis=0), axis=2)
    lightness = lab[..., 0]
    edges = cv2.magnitude(cv2.Sobel(lightness, cv2.CV_32F, 1, 0), cv2.Sobel(lightness, cv2.CV_32F, 0, 1))
    edges = cv2.GaussianBlur(edges, (0, 0), max(1.0, min(width, height) * 0.02))

    def unit(values: np.ndarray) -> np.ndarray:
        top = float(np.percentile(values, 99)) if values.size else 0.0
        return np.clip(values / top, 0, 1) if top > 1e-6 else np.zeros_like(values)

    energy = 0.5 * unit(distinct) + 0.5 * unit(edges)
    if alpha is not None:
        energy *= alpha.astype(np.float32) / 255.0
    return energy.astype(np.float32)


def analyse(image: Image.Image, size: tuple[int, int] | None = None) -> Analysis:
    """Faces and energy of a prepared (upright, 8-bit: `imaging.prepare`) image.

    `size` is the upright size of the original when `image` is a reduced copy of it; faces are
    given in the original's pixels.
    """
    width, height = size or image.size
    small = image.copy()
    small.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    alpha = np.asarray(small.getchannel("A")) if small.mode == "RGBA" else None
    rgb = np.asarray(imaging.flatten(small) if small.mode == "RGBA" else small.convert("RGB"))
    to_image = width / small.width
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = tuple((round(l * to_image), round(t * to_image), min(width, round(r * to_image)), min(height, round(b * to_image)))
                  for l, t, r, b in find_faces(grey))
    fraction = min(1.0, ENERGY_SIDE / max(small.size))
    energy_size = (max(1, round(small.width * fraction)), max(1, round(small.height * fraction)))
    rgb_small = cv2.resize(rgb, energy_size, interpolation=cv2.INTER_AREA)
    alpha_small = cv2.resize(alpha, energy_size, interpolation=cv2.INTER_AREA) if alpha is not None else None
    energy = energy_map(rgb_small, alpha_small)
    return Analysis(width, height, faces, energy, energy.shape[1] / width)


def analyse_file(path: Path) -> Analysis:
    """`analyse` an image file, decoded with `imaging.prepare` (JPEGs at reduced scale).

    Raises OSError (unreadable, not an image) and Image.DecompressionBombError like Image.open.
    """
    with Image.open(path) as opened:
        size = imaging.upright_size(opened)
        image = imaging.prepare(opened, draft=(ANALYSIS_SIDE, ANALYSIS_SIDE))
        image.load()
    return analyse(image, size)


def analysis_for(path: Path) -> Analysis:
    """`analyse_file`, remembered per process for the file as it is now (path, size, mtime).

    Raises as `analyse_file`.
    """
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    analysis = analyse_file(path)
    with _cache_lock:
        _cache[key] = analysis
        while len(_cache) > CACHED:
            _cache.popitem(last=False)
    return analysis


def _padded(face: Box, width: int, height: int) -> Box:
    w, h = face[2] - face[0], face[3] - face[1]
    return (max(0, round(face[0] - w * FACE_MARGIN["side"])), max(0, round(face[1] - h * FACE_MARGIN["top"])),
            min(width, round(face[2] + w * FACE_MARGIN["side"])), min(height, round(face[3] + h * FACE_MARGIN["bottom"])))


def _union(boxes) -> Box:
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def auto_crop(analysis: Analysis, bucket: tuple[int, int]) -> AutoCrop:
    """The proposed crop of `bucket`'s (width, height) aspect ratio for an analysed image.

    The box is the largest of that aspect inside the image (as `buckets.focus_crop`); only its
    position is chosen (see the module doc). Raises ValueError for a non-positive bucket.
    """
    if bucket[0] <= 0 or bucket[1] <= 0:
        raise ValueError("A bucket's sides must be positive")
    width, height, faces = analysis.width, analysis.height, analysis.faces
    full = focus_crop(width, height, bucket)
    box_w, box_h = full[2] - full[0], full[3] - full[1]
    method = "face" if faces else "content"
    horizontal = box_w < width
    if not horizontal and box_h >= height:
        return AutoCrop(full, method, faces, False)
    length, span = (width, box_w) if horizontal else (height, box_h)
    axis = (0, 2) if horizontal else (1, 3)
    lo, hi, face_cut = 0, length - span, False
    if faces:
        # Keep as much of the faces as fits: all of them padded, else the largest padded, else bare.
        for wanted in (_union([_padded(f, width, height) for f in faces]), _padded(faces[0], width, height), faces[0]):
            start, end = wanted[axis[0]], wanted[axis[1]]
            if end - start <= span:
                lo, hi = max(0, end - span), min(length - span, start)
                break
        else:
            face_cut = True
            centre = (faces[0][axis[0]] + faces[0][axis[1]]) / 2
            lo = hi = int(round(min(max(centre - span / 2, 0), length - span)))
    start = _best_start(analysis, horizontal, span, lo, hi)
    box = (start, full[1], start + box_w, full[3]) if horizontal else (full[0], start, full[2], start + box_h)
    return AutoCrop(box, method, faces, face_cut)


def _best_start(analysis: Analysis, horizontal: bool, span: int, lo: int, hi: int) -> int:
    """Where along the free axis (image pixels, in [lo, hi]) the box covers and centres the most energy."""
    if lo >= hi:
        return lo
    energy = analysis.energy.copy()
    scale = analysis.scale
    for face in analysis.faces:  # a face weighs more than anything else in the picture
        l, t, r, b = (int(v * scale) for v in face)
        energy[t:max(b, t + 1), l:max(r, l + 1)] += 4.0
    profile = energy.sum(axis=0 if horizontal else 1).astype(np.float64)
    total = float(profile.sum())
    n = len(profile)
    if total <= 1e-9:
        return int(round(min(max((lo + hi) / 2, lo), hi)))
    window = max(1, min(n, round(span * scale)))
    sums = np.concatenate([[0.0], np.cumsum(profile)])
    first, last = int(lo * scale), min(n - window, int(np.ceil(hi * scale)))
    last = max(first, last)
    starts = np.arange(first, last + 1)
    scores = sums[starts + window] - sums[starts]
    # Every window within 2% of the best holds the subject as well: centre the box on the energy
    # those windows cover together, so a small subject sits in the middle and a flat image is centred.
    good = starts[scores >= scores.max() - 0.02 * total]
    region = profile[good.min():good.max() + window]
    centroid = good.min() + float((region * np.arange(len(region))).sum() / max(region.sum(), 1e-9)) + 0.5
    start = centroid / scale - span / 2
    return int(round(min(max(start, lo), hi)))
