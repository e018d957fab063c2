import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from app.datasets.imagehash import content_hash, hamming, near_duplicate_groups, perceptual_hash


def picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like image: smooth random colour fields plus a few hard-edged shapes."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    image = coarse.resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(image).copy()
    for _ in range(4):
        x, y = rng.integers(0, size[0] - 100), rng.integers(0, size[1] - 100)
        pixels[y:y + 100, x:x + 100] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels, "RGB")


def test_resized_reencoded_jpeg_is_a_near_duplicate(tmp_path: Path) -> None:
    original = tmp_path / "original.png"
    picture(1).save(original)
    copy = tmp_path / "copy.jpg"
    picture(1).resize((320, 240), Image.Resampling.BILINEAR).save(copy, quality=60)
    assert hamming(perceptual_hash(original), perceptual_hash(copy)) <= 6


def test_unrelated_images_are_far_apart(tmp_path: Path) -> None:
    hashes = [perceptual_hash(picture(seed)) for seed in range(10, 20)]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 12


def test_hash_is_signed_64_bit_and_hamming_ignores_sign() -> None:
    values = [perceptual_hash(picture(seed)) for seed in range(30)]
    assert all(-(1 << 63) <= v < (1 << 63) for v in values)
    assert any(v < 0 for v in values)  # some hashes have the top bit set
    assert hamming(-1, (1 << 64) - 1) == 0
    assert hamming(0, -1) == 64


def test_transparent_png_hashes_like_its_flattened_jpeg(tmp_path: Path) -> None:
    rgba = picture(3).convert("RGBA")
    alpha = np.full((480, 640), 255, dtype=np.uint8)
    alpha[:, :100] = 0
    rgba.putalpha(Image.fromarray(alpha))
    flattened = Image.new("RGB", rgba.size, "white")
    flattened.paste(rgba, mask=rgba)
    flattened.save(tmp_path / "flat.jpg", quality=85)
    assert hamming(perceptual_hash(rgba), perceptual_hash(tmp_path / "flat.jpg")) <= 4


def test_content_hash_is_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 10000
    path.write_bytes(data)
    assert content_hash(path) == hashlib.sha256(data).hexdigest()


def test_near_duplicate_groups_finds_copies_among_unrelated(tmp_path: Path) -> None:
    items = [(f"img{seed}", perceptual_hash(picture(seed))) for seed in range(40, 60)]
    picture(45).resize((400, 300)).save(tmp_path / "dup.jpg", quality=70)
    picture(52).save(tmp_path / "dup2.webp", quality=80)
    items += [("dup-of-45", perceptual_hash(tmp_path / "dup.jpg")), ("dup-of-52", perceptual_hash(tmp_path / "dup2.webp"))]
    groups = near_duplicate_groups(items, max_distance=6)
    assert sorted(sorted(g) for g in groups) == [["dup-of-45", "img45"], ["dup-of-52", "img52"]]


def brute_force_pairs(hashes: list[int], max_distance: int) -> set[tuple[int, int]]:
    values = np.array(hashes, dtype=np.int64).view(np.uint64)
    close = np.bitwise_count(values[:, None] ^ values[None, :]) <= max_distance
    i, j = np.nonzero(np.triu(close, k=1))
    return set(zip(i.tolist(), j.tolist()))


def flip_bits(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def test_multi_index_hashing_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    hashes = rng.integers(-(1 << 63), (1 << 63) - 1, size=3000, dtype=np.int64).tolist()
    # Plant neighbours at every distance 0..9 around the band edges' worst cases.
    for k in range(300):
        base = hashes[k]
        bits = rng.choice(64, size=k % 10, replace=False).tolist()
        hashes.append(flip_bits(base, bits))
    for max_distance in (0, 3, 6, 8):
        expected = brute_force_pairs(hashes, max_distance)
        groups = near_duplicate_groups(list(enumerate(hashes)), max_distance=max_distance)
        # Every brute-force pair must end in one group, and groups must be unions of such pairs.
        group_of = {member: n for n, group in enumerate(groups) for member in group}
        assert all(i in group_of and group_of[i] == group_of.get(j) for i, j in expected)
        linked = {i for pair in expected for i in pair}
        assert set(group_of) == linked


def test_groups_of_exact_copies_and_small_inputs() -> None:
    assert near_duplicate_groups([]) == []
    assert near_duplicate_groups([("a", 5)]) == []
    groups = near_duplicate_groups([("a", 123), ("b", 999_999_999), ("c", 123), ("d", 123)], max_distance=0)
    assert groups == [["a", "c", "d"]]


def test_groups_scale_to_ten_thousand_images() -> None:
    rng = np.random.default_rng(11)
    hashes = rng.integers(-(1 << 63), (1 << 63) - 1, size=10000, dtype=np.int64).tolist()
    items = [(n, h) for n, h in enumerate(hashes)]
    items += [(f"near{n}", flip_bits(hashes[n], [n % 64, (n * 7) % 64])) for n in range(0, 1000, 10)]
    groups = near_duplicate_groups(items, max_distance=6)
    found = {tuple(sorted(map(str, g))) for g in groups}
    assert {(str(n), f"near{n}") for n in range(0, 1000, 10)} <= found
