"""Image fingerprints: exact (sha256 of the bytes) and perceptual (finds near duplicates).

The perceptual hash is pHash: the image (`imaging.prepare`: upright, 8-bit, flattened onto white, grey) is scaled
to 32x32, transformed with a 2-D DCT, and the 8x8 lowest frequencies are compared with their
median, giving 64 bits. Low frequencies survive resizing, re-encoding (JPEG quality, PNG<->JPEG)
and small colour shifts, so a resized or re-saved copy lands within a few bits of the original,
while different pictures differ in about half of them. dHash was the alternative; pHash is
steadier under JPEG re-encoding, and with numpy it costs the same.

Hashes are returned as signed 64-bit ints so they fit an SQLite/PostgreSQL BIGINT as they are;
`hamming` masks to 64 bits, so the sign does not matter when comparing.
"""
import hashlib
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from app import imaging

_MASK64 = (1 << 64) - 1
_HASH_SIDE = 8
_DCT_SIDE = 32


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2 / n)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix(_DCT_SIDE)


def _to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def perceptual_hash(image: Image.Image | Path | str) -> int:
    """64-bit pHash of an image (an open PIL image, which gets decoded, or a path)."""
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            return perceptual_hash(opened)
    # JPEG can decode at 1/2..1/8 scale directly, which makes hashing big photos cheap.
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        image.draft("L", (_DCT_SIDE * 4, _DCT_SIDE * 4))
    # The shared conversion: 16-bit images scaled (clipped, every one would hash as plain white).
    image = imaging.prepare(image, keep_alpha=False)
    grey = image.convert("L").resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:_HASH_SIDE, :_HASH_SIDE].ravel()
    bits = low > np.median(low)
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return _to_signed(value)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes (signed or unsigned)."""
    return ((a ^ b) & _MASK64).bit_count()


def content_hash(path: Path | str) -> str:
    """sha256 hex digest of a file, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def near_duplicate_groups(items: Sequence[tuple[Hashable, int]], max_distance: int = 6) -> list[list[Hashable]]:
    """Group ids whose hashes are within `max_distance` bits, as connected components.

    Multi-index hashing: the 64 bits are cut into `max_distance + 1` bands; two hashes that
    differ in at most `max_distance` bits must agree exactly on at least one band (pigeonhole),
    so only hashes sharing a band value are compared, and those comparisons run in numpy.
    Near-linear for real datasets instead of 50 million pairs for 10,000 images.

    Groups keep the input order, and are ordered by their first member. Similarity is
    transitive here (A~B and B~C put A, B, C in one group), which is what a review list wants.
    """
    if not 0 <= max_distance < 64:
        raise ValueError("max_distance must be between 0 and 63")
    if len(items) < 2:
        return []
    # Identical hashes (copies of one file) are merged first, so they cost nothing below.
    unique, inverse = np.unique(np.array([h & _MASK64 for _, h in items], dtype=np.uint64), return_inverse=True)
    parent = list(range(len(unique)))

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    edges = np.linspace(0, 64, max_distance + 2).round().astype(int)
    for start, stop in zip(edges[:-1].tolist(), edges[1:].tolist()):
        keys = (unique >> np.uint64(start)) & np.uint64((1 << (stop - start)) - 1)
        order = np.argsort(keys, kind="stable")
        # Runs of equal band values; only runs of two or more hold candidates.
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        for run in np.split(order, cuts):
            for i, j in _close_pairs(unique, run, max_distance):
                root_i, root_j = find(i), find(j)
                if root_i != root_j:
                    parent[max(root_i, root_j)] = min(root_i, root_j)

    groups: dict[int, list[Hashable]] = {}
    for (item_id, _), unique_index in zip(items, inverse.tolist()):
        groups.setdefault(find(unique_index), []).append(item_id)
    return [members for members in groups.values() if len(members) > 1]


def _close_pairs(hashes: np.ndarray, run: np.ndarray, max_distance: int, block: int = 512) -> list[tuple[int, int]]:
    """Index pairs (i < j) within `run` whose hashes differ in at most `max_distance` bits."""
    pairs: list[tuple[int, int]] = []
    if len(run) < 2:
        return pairs
    members = hashes[run]
    # Row blocks bound memory when thousands of images share a band value.
    for first in range(0, len(run), block):
        rows = members[first:first + block]
        close_i, close_j = np.nonzero(np.bitwise_count(rows[:, None] ^ members[None, :]) <= max_distance)
        close_i += first
        upper = close_j > close_i
        pairs.extend(zip(run[close_i[upper]].tolist(), run[close_j[upper]].tolist()))
    return pairs
