"""The automatic crop and the trash at scale, each side by side with its floor:

1. automatic crop proposal (decode + faces + energy + placement) per image size, against decoding the
   same file alone with `imaging.load` (the floor any crop pays), and the share of face detection;
2. a trash of N entries: one page of the trash view and the summary (count, size) against reading
   every entry as Health did before (`list_trash`), and emptying it against `shutil.rmtree` of an
   identical copy (the bare-filesystem floor).

Run: python bench/bench_crop_trash.py [--entries 5000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import imaging  # noqa: E402
from app.datasets import autocrop, trash  # noqa: E402
from tests.datasets_helpers import drawn_face  # noqa: E402


def timed(fn, repeat: int) -> float:
    """Median wall time of `fn()` in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def photo(path: Path, size: tuple[int, int], fmt: str) -> Path:
    small = np.random.default_rng(1).integers(40, 200, (size[1] // 40, size[0] // 40, 3)).astype(np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    side = size[0] // 5
    image.paste(drawn_face(side).convert("RGB"), (size[0] - side * 2, size[1] // 6))
    image.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    return path


def bench_crop(tmp: Path, repeat: int) -> None:
    print("\n1. Automatic crop proposal (median ms) against decoding alone")
    print(f"{'image':<22}{'decode only':>14}{'proposal':>12}{'of which faces':>16}{'faces found':>13}")
    autocrop.analyse(Image.new("RGB", (64, 64)))  # load the cascades once, as a running process has
    for size, fmt in (((1200, 800), "PNG"), ((4000, 3000), "JPEG"), ((6000, 4000), "PNG"), ((8000, 6000), "JPEG")):
        path = photo(tmp / f"p{size[0]}.{fmt.lower()}", size, fmt)
        decode = timed(lambda: imaging.load(path), repeat)
        proposal = timed(lambda: autocrop.auto_crop(autocrop.analyse_file(path), (1024, 1024)), repeat)
        analysis = autocrop.analyse_file(path)
        small = imaging.load(path, draft=(autocrop.ANALYSIS_SIDE,) * 2)
        small.thumbnail((autocrop.ANALYSIS_SIDE,) * 2)
        grey = np.asarray(small.convert("L"))
        faces = timed(lambda: autocrop.find_faces(grey), repeat)
        label = f"{size[0]}×{size[1]} {fmt}"
        print(f"{label:<22}{decode:>14.0f}{proposal:>12.0f}{faces:>16.0f}{len(analysis.faces):>13}")


def make_trash(root: Path, entries: int) -> None:
    base = root / trash.TRASH
    for n in range(1, entries + 1):
        entry = base / f"20261130-120000-{n}"
        (entry / "files").mkdir(parents=True)
        (entry / "files" / f"img{n}.png").write_bytes(b"x" * 2000)
        (entry / "files" / f"img{n}.txt").write_text("mychar, 1girl")
        (entry / "entry.json").write_text(json.dumps({"image": f"img{n}.png", "caption": f"img{n}.txt",
                                                      "deleted_at": "2026-11-30T12:00:00+00:00"}))


def bench_trash(tmp: Path, entries: int, repeat: int) -> None:
    root = tmp / "set"
    make_trash(root, entries)
    copy = tmp / "copy"
    shutil.copytree(root, copy)
    print(f"\n2. A trash of {entries:,} entries (median ms)")
    print(f"{'what':<46}{'ms':>10}")
    print(f"{'trash view: one page (50 entries, sizes)':<46}{timed(lambda: trash.trash_page(root, 1), repeat):>10.0f}")
    print(f"{'trash view: summary (count, total size)':<46}{timed(lambda: trash.trash_summary(root), repeat):>10.0f}")
    print(f"{'before: every entry read (list_trash)':<46}{timed(lambda: trash.list_trash(root), repeat):>10.0f}")
    start = time.perf_counter()
    deleted, _, failed = trash.empty_trash(root, None)
    empty = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    shutil.rmtree(copy / trash.TRASH)
    floor = (time.perf_counter() - start) * 1000
    print(f"{f'empty_trash ({deleted:,} deleted, {len(failed)} failed)':<46}{empty:>10.0f}")
    print(f"{'floor: shutil.rmtree of the same tree':<46}{floor:>10.0f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-crop-") as tmp:
        bench_crop(Path(tmp), args.repeat)
        bench_trash(Path(tmp), args.entries, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
