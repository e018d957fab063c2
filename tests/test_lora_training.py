"""The request-free parts of LoRA training: pre-flight, the training zip, weights archives, the loss chart."""
from __future__ import annotations

import io
import tarfile
import zipfile

import pytest
from PIL import Image

from app.datasets import ImageFacts
from app.loras.training import (
    WeightsError, build_training_zip, check_safetensors, extract_weights, loss_chart_svg,
    parse_resolutions, preflight, training_facts, zip_captions,
)
from tests.fake_replicate import safetensors_bytes


def image(id, caption="TOK, a cat", *, width=1024, height=1024, error=None, digest=None, fmt="PNG"):
    return ImageFacts(id, f"img{id}.png", width, height, error, caption, digest or f"h{id}", fmt)


def test_a_clean_dataset_passes():
    report = preflight([image(i) for i in range(12)], trigger="TOK", resolutions=[512, 768, 1024])
    assert report.ok and report.errors == [] and report.warnings == []
    assert report.image_count == 12 and report.caption_count == 12


def test_errors_block_and_link_to_their_image():
    images = [image(i) for i in range(12)] + [
        image(20, error="cannot identify image file"), image(21, caption="   "), image(22, caption=None)]
    report = preflight(images, trigger="TOK", autocaption=False)
    assert not report.ok
    assert [(issue.image_id, issue.relpath) for issue in report.errors] == [
        (20, "img20.png"), (21, "img21.png"), (22, "img22.png")]
    assert "cannot read" in report.errors[0].message and "empty" in report.errors[1].message
    assert "autocaption is off" in report.errors[2].message
    # With autocaption on, a missing caption file is the trainer's to fill.
    assert [i.image_id for i in preflight(images, trigger="TOK", autocaption=True).errors] == [20, 21]


def test_warnings_name_each_image():
    images = [image(1, caption="a cat"), image(2, digest="same"), image(3, digest="same"),
              image(4, width=200, height=900), image(5, caption="a [trigger] cat")]
    report = preflight(images, trigger="TOK", resolutions=[512, 1024])
    assert report.ok
    by_image = {issue.image_id: issue.message for issue in report.warnings}
    assert "lacks the trigger word “TOK”" in by_image[1]
    assert "Identical to img2.png" in by_image[3]
    assert "200×900 is far below the training resolution (512)" in by_image[4]
    assert 5 not in by_image  # ai-toolkit's placeholder counts as the trigger
    assert "Only 5 images" in report.warnings[-1].message and report.warnings[-1].image_id is None


def test_nothing_to_train_on_is_an_error():
    report = preflight([image(1, error="broken")], trigger="TOK")
    assert [issue.message for issue in report.errors][-1] == "There is no readable image to train on."


def test_issue_lists_are_bounded():
    report = preflight([image(i, caption="x") for i in range(500)], trigger="TOK", max_listed=50)
    assert len(report.warnings) == 51 and report.warnings[-1].message == "… and 450 more like these."


def test_parse_resolutions():
    assert parse_resolutions("512,768, 1024") == [512, 768, 1024]
    assert parse_resolutions("1024;512,x,") == [512, 1024]
    assert parse_resolutions(None) == []


def test_training_zip_has_images_and_captions_at_its_root(tmp_path):
    sources = []
    for number, (name, caption) in enumerate([("a", "a cat"), ("b", "TOK, a dog"), ("c", None),
                                              ("sub/d", "\\(smile\\)")]):
        path = tmp_path / f"src{number}.png"
        Image.new("RGB", (32, 32), (number * 50, 0, 0)).save(path)
        sources.append((path, name, caption))
    gif = tmp_path / "anim.gif"
    Image.new("P", (16, 16)).save(gif)
    sources.append((gif, "anim", "a gif"))
    dest = tmp_path / "out" / "train.zip"
    result = build_training_zip(sources, dest, trigger="TOK", strip_escapes=True, convert_formats=True)
    assert len(result.images) == 5 and result.reencoded == 1
    with zipfile.ZipFile(dest) as archive:
        names = sorted(archive.namelist())
        assert names == ["a.png", "a.txt", "anim.png", "anim.txt", "b.png", "b.txt", "c.png", "sub_d.png",
                         "sub_d.txt"]
        assert archive.read("a.txt").decode() == "TOK, a cat"
        assert archive.read("sub_d.txt").decode() == "TOK, (smile)"
        assert archive.read("a.png") == sources[0][0].read_bytes()  # copied byte for byte
    assert zip_captions(dest) == {"a.png": "TOK, a cat", "anim.png": "TOK, a gif", "b.png": "TOK, a dog",
                                  "c.png": "", "sub_d.png": "TOK, (smile)"}
    assert not list(dest.parent.glob(".*"))  # no temporary left behind


def test_extract_weights_from_tar_zip_or_bare_file(tmp_path):
    weights = safetensors_bytes("x")
    tar_path = tmp_path / "w.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, data in (("output/other.safetensors", safetensors_bytes("other")),
                           ("output/lora.safetensors", weights), ("output/config.yaml", b"x: 1")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert extract_weights(tar_path, tmp_path / "a.safetensors") == len(weights)
    assert (tmp_path / "a.safetensors").read_bytes() == weights
    zip_path = tmp_path / "w.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("lora.safetensors", weights)
    extract_weights(zip_path, tmp_path / "b.safetensors")
    assert (tmp_path / "b.safetensors").read_bytes() == weights
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(weights)
    extract_weights(bare, tmp_path / "c.safetensors")
    assert check_safetensors(tmp_path / "c.safetensors")["lora_unet_single_blocks_0.lora_down.weight"]["shape"] == [4, 4]


def test_extract_weights_refuses_what_is_not_a_lora(tmp_path):
    empty_tar = tmp_path / "empty.tar"
    with tarfile.open(empty_tar, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(WeightsError, match="holds no .safetensors"):
        extract_weights(empty_tar, tmp_path / "x.safetensors")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 100)
    with pytest.raises(WeightsError, match="not a .safetensors"):
        extract_weights(junk, tmp_path / "y.safetensors")
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "y.safetensors").exists()
    assert not list(tmp_path.glob(".*part"))


def test_loss_chart_is_inline_svg_without_style():
    svg = loss_chart_svg([(0, 0.6), (50, 0.3), (100, 0.1)], total=100, width=200, height=50)
    assert svg.startswith("<svg") and "style=" not in svg and "<script" not in svg
    assert 'points="4.0,4.0 100.0,29.2 196.0,46.0"' in svg
    assert "Loss from 0.6 at step 0 to 0.1 at step 100" in svg
    assert loss_chart_svg([(1, 0.5)]) == ""
    many = loss_chart_svg([(i, 1 / (i + 1)) for i in range(5000)])
    assert many.count(",") <= 402


def test_training_facts():
    facts = dict(training_facts({"steps": 1000, "lora_rank": 16, "batch_size": 2, "resolution": "512,1024"}, 20))
    assert facts == {"Images": "20", "Steps": "1,000", "LoRA rank": "16", "Batch size": "2",
                     "Resolution": "512,1024", "Epochs": "≈ 100.0 (each image seen this often)"}


def test_preflight_reads_the_datasets_image_facts_even_without_hash_or_format():
    """The check takes the datasets area's own ImageFacts (no copy of it); an image whose hash or format
    is not known yet is neither a duplicate nor converted."""
    images = [ImageFacts(n, f"img{n}.png", 1024, 1024, None, "TOK, a cat") for n in range(10)]
    report = preflight(images, trigger="TOK")
    assert report.ok and report.warnings == [] and (report.image_count, report.convert_count) == (10, 0)
