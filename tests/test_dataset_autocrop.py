"""The automatic crop to a bucket: it keeps the face (or, with none found, the subject) that a
centred crop would cut, in every image mode and orientation, and writes exactly the bucket's size."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from app import imaging
from app.datasets import autocrop, buckets
from tests.datasets_helpers import drawn_face, illustrated_figure


def contains(box, inner) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


def photo_with_face(size=(1200, 800), at=(900, 200), side=220, seed=1) -> tuple[Image.Image, tuple]:
    """A textured photo-like background with a drawn face; returns the image and the face's box."""
    noise = np.random.default_rng(seed).integers(60, 120, (size[1], size[0], 3)).astype(np.uint8)
    image = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3))
    face = drawn_face(side)
    image.paste(face.convert("RGB"), at)
    # The drawn head's ellipse within the pasted picture.
    return image, (at[0] + int(side * 0.1), at[1] + int(side * 0.1), at[0] + int(side * 0.9), at[1] + int(side * 1.15))


def test_a_face_off_centre_is_kept_where_the_centred_crop_cuts_it() -> None:
    image, head = photo_with_face()
    analysis = autocrop.analyse(image)
    assert len(analysis.faces) == 1 and contains(head, analysis.faces[0]) is False  # found, roughly the head
    found = analysis.faces[0]
    assert abs((found[0] + found[2]) / 2 - (head[0] + head[2]) / 2) < 30
    proposal = autocrop.auto_crop(analysis, (1024, 1024))
    assert proposal.method == "face" and not proposal.face_cut
    assert proposal.box[2] - proposal.box[0] == 800 and proposal.box[3] - proposal.box[1] == 800
    assert contains(proposal.box, head)
    assert not contains(buckets.focus_crop(1200, 800, (1024, 1024)), head)  # what trainers would keep


def test_a_portrait_keeps_the_head_with_its_hair() -> None:
    image, head = photo_with_face(size=(600, 1200), at=(190, 20), side=220)
    proposal = autocrop.auto_crop(autocrop.analyse(image), (1024, 1024))
    assert proposal.method == "face" and proposal.box[1] == 0  # the top of the head is the top of the image
    assert contains(proposal.box, head)
    assert not contains(buckets.focus_crop(600, 1200, (1024, 1024)), head)


@pytest.mark.parametrize(("at", "bucket"), [((100, 100), (1024, 1024)), ((850, 100), (1024, 1024)), ((80, 100), (832, 1216))])
def test_an_illustrated_character_without_a_findable_face_is_kept(at, bucket) -> None:
    image, figure = illustrated_figure(at=at)
    proposal = autocrop.auto_crop(autocrop.analyse(image), bucket)
    assert proposal.method == "content" and proposal.faces == ()
    assert contains(proposal.box, figure)
    assert not contains(buckets.focus_crop(*image.size, bucket), figure)


def test_a_drawn_face_with_eyes_may_be_found_and_the_character_is_kept_either_way() -> None:
    image, figure = illustrated_figure(at=(850, 100), eyes=True)
    proposal = autocrop.auto_crop(autocrop.analyse(image), (1024, 1024))
    assert contains(proposal.box, figure)


def test_a_subject_in_the_middle_of_the_box_when_there_is_room() -> None:
    image, figure = illustrated_figure(size=(2400, 800), at=(1500, 100))
    box = autocrop.auto_crop(autocrop.analyse(image), (1024, 1024)).box
    assert contains(box, figure)
    assert abs((box[0] + box[2]) / 2 - (figure[0] + figure[2]) / 2) < 60


def test_a_uniform_image_gets_the_centred_crop() -> None:
    image = Image.new("RGB", (1200, 800), (128, 128, 128))
    assert autocrop.auto_crop(autocrop.analyse(image), (1024, 1024)).box == buckets.focus_crop(1200, 800, (1024, 1024))


def test_transparent_pixels_are_background() -> None:
    """A cut-out character on a transparent canvas: the box goes to the opaque part."""
    figure_image, figure = illustrated_figure(at=(850, 100))
    rgba = figure_image.convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    alpha.paste(255, (figure[0], figure[1], figure[2], figure[3]))
    rgba.putalpha(alpha)
    proposal = autocrop.auto_crop(autocrop.analyse(rgba), (1024, 1024))
    assert contains(proposal.box, figure)


def test_a_face_too_wide_for_the_bucket_is_said_so_and_centred_on() -> None:
    image, head = photo_with_face(size=(900, 900), at=(300, 200), side=500)
    proposal = autocrop.auto_crop(autocrop.analyse(image), (2048, 512))  # keeps a 900 × 225 band
    assert proposal.face_cut and "too narrow" in proposal.note
    face = proposal.faces[0]
    assert abs((proposal.box[1] + proposal.box[3]) / 2 - (face[1] + face[3]) / 2) <= 1


def test_files_are_read_upright_and_in_every_mode(tmp_path: Path) -> None:
    # Stored sideways with EXIF orientation 6: only an upright decode finds the face.
    upright, head = photo_with_face()
    exif = Image.Exif()
    exif[imaging.ORIENTATION_TAG] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "phone.jpg", quality=92, exif=exif)
    analysis = autocrop.analyse_file(tmp_path / "phone.jpg")
    assert (analysis.width, analysis.height) == (1200, 800) and len(analysis.faces) == 1
    assert contains(autocrop.auto_crop(analysis, (1024, 1024)).box, head)
    # A 16-bit grey scan: scaled, not clipped to white, so the subject still stands out.
    figure_image, figure = illustrated_figure(at=(850, 100))
    grey16 = (np.asarray(figure_image.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as check:
        assert check.mode.startswith("I")
    assert contains(autocrop.auto_crop(autocrop.analyse_file(tmp_path / "scan.png"), (1024, 1024)).box, figure)


def test_the_written_auto_crop_is_the_bucket_and_the_original_is_untouched(tmp_path: Path) -> None:
    image, head = photo_with_face()
    source = tmp_path / "shot.png"
    image.save(source)
    before = source.read_bytes()
    proposal = autocrop.auto_crop(autocrop.analyse_file(source), (1024, 1024))
    written = buckets.crop_to_new_file(source, proposal.box, size=(1024, 1024))
    assert source.read_bytes() == before
    with Image.open(written) as crop:
        assert crop.size == (1024, 1024)
        pixels = np.asarray(crop.convert("L"), dtype=int)
    # The face's dark eyes are in the written pixels: mapped from the source box to the crop.
    scale = 1024 / (proposal.box[2] - proposal.box[0])
    eye_x = int((head[0] - proposal.box[0] + 0.26 * 220) * scale)
    eye_y = int((head[1] - proposal.box[1] + 0.42 * 220) * scale)
    assert pixels[eye_y - 10:eye_y + 10, eye_x - 10:eye_x + 10].mean() < 80
