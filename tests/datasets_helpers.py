"""Shared set-up for the dataset route tests: folders of real images under the configured root."""
from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

from PIL import Image

from app.datasets.models import Dataset, DatasetImage
from app.extensions import db


def save_image(path: Path, colour="red", size=(64, 48), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt)
    return path


def pattern_image(path: Path, seed: int, size=(64, 64)) -> Path:
    """A smooth random pattern: unlike a flat colour, its perceptual hash is its own."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


def user_root(app, username: str = "ada") -> Path:
    """The first dataset root as `username` sees it (`{user}` filled in)."""
    return Path(str(app.config["DATASET_ROOTS"][0]).replace("{user}", username))


def make_folder(app, name="set", captions: dict[str, str | bytes | None] | None = None, *, username: str = "ada") -> Path:
    """A dataset folder under the user's first root; `captions` maps image name -> caption (None: no file)."""
    root = user_root(app, username) / name
    colours = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
    captions = captions if captions is not None else {
        "a.png": "tok, 1girl, long hair, smile",
        "b.png": "tok, 1girl, short hair, hat",
        "c.png": "1boy, long hair",
        "d.png": None,
    }
    for number, (image, caption) in enumerate(captions.items()):
        save_image(root / image, colours[number % len(colours)], (64 + number, 48))
        if caption is not None:
            target = (root / image).with_suffix(".txt")
            if isinstance(caption, bytes):
                target.write_bytes(caption)
            else:
                target.write_text(caption, encoding="utf-8")
    return root


def open_dataset(client, run_jobs, folder: Path, name: str | None = None) -> Dataset:
    response = client.post("/datasets/", data={"folder": str(folder), "name": name or folder.name})
    assert response.status_code == 303, response.get_data(as_text=True)
    run_jobs()
    dataset_id = int(re.search(r"/datasets/(\d+)", response.headers["Location"]).group(1))
    return db.session.get(Dataset, dataset_id)


def image_named(dataset: Dataset, relpath: str) -> DatasetImage:
    db.session.expire_all()
    return db.session.scalar(db.select(DatasetImage).where(DatasetImage.dataset_id == dataset.id,
                                                           DatasetImage.relpath == relpath))


def png_bytes(colour="red", size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


MiB = 1 << 20


def deflated_zeros(size: int) -> tuple[bytes, int]:
    """(raw deflate stream, crc32) of `size` zero bytes, made in 1 MiB steps."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    block, crc, parts = bytes(MiB), 0, []
    for start in range(0, size, MiB):
        piece = block[:min(MiB, size - start)]
        crc = zlib.crc32(piece, crc)
        parts.append(squeeze.compress(piece))
    parts.append(squeeze.flush())
    return b"".join(parts), crc


def honest_bomb(count: int, size: int) -> io.BytesIO:
    """A zip of `count` entries named N.png, each `size` zero bytes, with truthful headers —
    the 10 MB zip of 50 zero-filled 199 MiB "png"s from the security review. Built by hand from
    one deflate stream, so making it costs one compression, not `count`."""
    data, crc = deflated_zeros(size)
    out, central = io.BytesIO(), io.BytesIO()
    for n in range(count):
        name = f"{n}.png".encode()
        offset = out.tell()
        fields = (20, 0, 8, 0, 0, crc, len(data), size, len(name), 0)
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + data)
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, offset) + name)
    directory = central.getvalue()
    out.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), out.tell(), 0))
    out.seek(0)
    return out


def drawn_face(side: int = 200, *, background: int = 40):
    """A grey drawn face (head, brows, eyes, nose shadow, mouth) that OpenCV's frontal-face cascade
    finds, as an `L` image `side` wide and 1.25 × `side` tall; the face fills the middle of it."""
    from PIL import ImageDraw, ImageFilter

    s = side
    image = Image.new("L", (s, int(s * 1.25)), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((s * 0.1, s * 0.1, s * 0.9, s * 1.15), fill=190)
    draw.rectangle((s * 0.22, s * 0.38, s * 0.44, s * 0.43), fill=60)
    draw.rectangle((s * 0.56, s * 0.38, s * 0.78, s * 0.43), fill=60)
    draw.ellipse((s * 0.25, s * 0.47, s * 0.42, s * 0.56), fill=30)
    draw.ellipse((s * 0.58, s * 0.47, s * 0.75, s * 0.56), fill=30)
    draw.polygon([(s * 0.5, s * 0.55), (s * 0.44, s * 0.75), (s * 0.56, s * 0.75)], fill=150)
    draw.ellipse((s * 0.35, s * 0.85, s * 0.65, s * 0.93), fill=70)
    return image.filter(ImageFilter.GaussianBlur(s / 60))


def illustrated_figure(size=(1200, 800), at=(100, 100), *, background=(235, 240, 250), eyes=False):
    """A flat-coloured, outlined character (hair, head, body; `eyes` drawn only when asked) on a plain
    background, as an illustration shows one. Without eyes no face detector finds it (a character
    seen from behind, or drawn in a style photo cascades miss). Returns (RGB image, its bounding box)."""
    from PIL import ImageDraw

    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    x, y = at
    draw.polygon([(x, y + 20), (x + 240, y + 20), (x + 260, y + 320), (x - 20, y + 320)], fill=(90, 60, 140))
    draw.ellipse((x + 20, y + 20, x + 220, y + 230), fill=(250, 220, 200), outline=(40, 30, 30), width=4)
    if eyes:
        draw.ellipse((x + 60, y + 100, x + 100, y + 140), fill=(60, 120, 220))
        draw.ellipse((x + 140, y + 100, x + 180, y + 140), fill=(60, 120, 220))
    draw.rectangle((x + 50, y + 230, x + 190, y + 600), fill=(200, 40, 60), outline=(30, 20, 20), width=4)
    return image, (x - 20, y + 20, x + 260, y + 600)
