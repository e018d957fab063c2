"""Every output shape models return, read by the client: files (URLs and data: URIs, images or not)
and text; bounded sizes; URLs cut short in messages. And the fake validating inputs as Replicate does."""
from __future__ import annotations

import base64
import io
import struct
import wave

import pytest
from PIL import Image

from app.replicate.client import (
    InputError, OutputError, ReplicateClient, ReplicateError, decode_data_uri, identify_output, parse_output,
    shorten_url, shorten_urls,
)
from app.replicate.schema import output_schema
from tests.fake_replicate import FakeReplicate, png_bytes

NANO = "google/nano-banana"


@pytest.fixture
def replicate(fake_replicate):
    with ReplicateClient(fake_replicate.token, fake_replicate.base_url, allow_http_downloads=True,
                         download_hosts={"127.0.0.1"}, sleep=lambda _s: None) as client:
        yield client


def webp_bytes(colour=(200, 30, 30), size=(24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "WEBP")
    return buffer.getvalue()


def wav_bytes() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(8000)
        out.writeframes(struct.pack("<100h", *range(100)))
    return buffer.getvalue()


MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64
ZIP = b"PK\x03\x04" + b"\x00" * 60


# parse_output: the shapes

@pytest.mark.parametrize("output, files, text", [
    (["https://r.test/0.png", "https://r.test/1.png"], [("https://r.test/0.png", "0"), ("https://r.test/1.png", "1")],
     None),
    ("https://r.test/out.webp", [("https://r.test/out.webp", "")], None),
    ("Caption: a dog on a couch", [], "Caption: a dog on a couch"),
    (["A", " red", " fox", "."], [], "A red fox."),
    (["first caption", "second caption"], [], "first caption\nsecond caption"),
    ({"image": "https://r.test/a.png", "caption": "a fox", "score": 0.9}, [("https://r.test/a.png", "image")],
     "caption: a fox\nscore: 0.9"),
    ({"frames": ["https://r.test/f0.png", "https://r.test/f1.png"], "video": "https://r.test/v.mp4"},
     [("https://r.test/f0.png", "frames.0"), ("https://r.test/f1.png", "frames.1"), ("https://r.test/v.mp4", "video")],
     None),
    (["data:image/webp;base64,AAAA"], [("data:image/webp;base64,AAAA", "0")], None),
    (None, [], None),
    (42, [], "42"),
    ("https://example.test is my favourite site", [], "https://example.test is my favourite site"),
])
def test_parse_output_finds_files_and_text_in_every_shape(output, files, text):
    parsed = parse_output(output)
    assert [(item.value, item.key) for item in parsed.files] == files
    assert parsed.text == text


def test_tokens_are_joined_as_the_output_schema_says():
    schema = {"components": {"schemas": {"Output": {"type": "array", "items": {"type": "string"},
                                                    "x-cog-array-type": "iterator",
                                                    "x-cog-array-display": "concatenate"}}}}
    assert parse_output(["Hel", "lo"], output_schema(schema)).text == "Hello"
    assert parse_output(["Hel", "lo"]).text == "Hel\nlo"  # without the schema: separate texts


def test_outputs_of_absurd_size_or_depth_are_bounded():
    deep: object = "https://r.test/x.png"
    for _ in range(50):
        deep = [deep]
    parsed = parse_output(deep)
    assert parsed.files == [] and parsed.dropped == 1
    parsed = parse_output([f"https://r.test/{i}.png" for i in range(10_000)])
    assert len(parsed.files) == 500 and parsed.dropped == 9_500


# identify_output and data: URIs

def test_files_are_identified_by_their_bytes_not_their_declared_type():
    image = identify_output(webp_bytes(), "application/octet-stream")
    assert (image.kind, image.image_format, image.content_type, image.extension) == ("image", "WEBP", "image/webp", ".webp")
    assert identify_output(MP4, "application/octet-stream").content_type == "video/mp4"
    audio = identify_output(wav_bytes())
    assert (audio.kind, audio.content_type, audio.playable) == ("audio", "audio/wav", True)
    archive = identify_output(ZIP, "image/png")  # a lying type does not make it an image
    assert (archive.kind, archive.content_type, archive.extension, archive.playable) == (
        "file", "application/zip", ".zip", False)
    assert identify_output(b"just text", "text/plain").content_type == "text/plain"
    assert identify_output(b"\x00\x01junk").content_type == "application/octet-stream"


def test_a_data_uri_is_decoded_with_its_declared_type_and_a_size_bound():
    data = webp_bytes()
    uri = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
    assert decode_data_uri(uri, 1024 * 1024) == (data, "application/octet-stream")
    assert decode_data_uri("data:text/plain,hello%20there", 100) == (b"hello there", "text/plain")
    with pytest.raises(OutputError, match="without data"):
        decode_data_uri("data:image/png;base64", 100)


def test_a_100_mb_data_uri_is_refused_before_it_is_decoded_with_a_short_message():
    uri = "data:image/webp;base64," + "A" * (100 * 1024 * 1024 * 4 // 3)
    with pytest.raises(OutputError) as caught:
        decode_data_uri(uri, 64 * 1024 * 1024)
    assert "about 100 MB" in caught.value.message and "64 MB" in caught.value.message
    assert len(caught.value.message) < 300 and "AAAA" not in caught.value.message


def test_every_url_in_a_message_is_cut_to_about_200_characters():
    uri = "data:image/webp;base64," + "Q" * 9_700
    assert shorten_url(uri) == "data:image/webp;base64,… (9,723 characters)"
    long_url = "https://replicate.delivery/" + "x" * 500 + ".png"
    message = ReplicateError(f"Refusing to download '{long_url}' or {uri}: no.").message
    assert len(message) < 320 and "x" * 201 not in message and "Q" * 10 not in message
    assert message.startswith("Refusing to download 'https://replicate.delivery/xxx")
    assert len(shorten_urls("y" * 10_000)) <= 2001


# The client against the fake: outputs of every shape reach the caller as files

def test_fetch_output_reads_data_uris_and_urls_alike(replicate, fake_replicate):
    fake_replicate.output_mode = "data-uri"
    prediction = replicate.create_prediction(NANO, {"prompt": "p"}, wait=5)
    [item] = parse_output(prediction.output).files
    assert item.value.startswith("data:application/octet-stream;base64,")
    fetched = replicate.fetch_output(item.value)
    assert fetched.kind == "image" and fetched.image_format == "WEBP"
    url = fake_replicate.publish("clip.mp4", MP4, "video/mp4")
    assert replicate.fetch_output(url).content_type == "video/mp4"
    data, image_format = replicate.download_image(item.value)  # data URIs are images like any other
    assert image_format == "WEBP"


def test_an_output_on_a_host_not_allowed_is_refused_with_the_host_named(fake_replicate):
    with ReplicateClient(fake_replicate.token, fake_replicate.base_url, download_hosts={"replicate.delivery"},
                         sleep=lambda _s: None) as client:
        with pytest.raises(OutputError) as caught:
            client.fetch_output("https://evil.example/" + "a" * 5000 + ".png")
    assert "evil.example is not one of the allowed download hosts" in caught.value.message
    assert len(caught.value.message) < 400


def test_a_data_uri_over_the_download_limit_is_refused(fake_replicate):
    with ReplicateClient(fake_replicate.token, fake_replicate.base_url, max_download_bytes=1000,
                         sleep=lambda _s: None) as client:
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(Image.new("RGB", (300, 300)))).decode() * 3
        with pytest.raises(OutputError, match="Tessera keeps output files up to"):
            client.fetch_output(uri)


# The fake validates inputs as Replicate does, so a wrong JSON type fails a test

@pytest.mark.parametrize("model_input, field, reason", [
    ({"prompt": "p", "num_inference_steps": "20"}, "num_inference_steps", "Invalid type. Expected: integer, given: string"),
    ({"prompt": "p", "guidance": "3.5"}, "guidance", "Invalid type. Expected: number, given: string"),
    ({"prompt": "p", "num_inference_steps": 80}, "num_inference_steps", "Must be less than or equal to 50"),
    ({"prompt": "p", "lora_scale": "0.8, 1.0"}, "lora_scale", "Invalid type. Expected: number, given: string"),
])
def test_the_fake_refuses_wrong_types_and_ranges_with_invalid_fields(replicate, model_input, field, reason):
    with pytest.raises(InputError) as caught:
        replicate.create_prediction("black-forest-labs/flux-dev-lora", model_input)
    assert caught.value.fields == {field: reason}


def test_the_fake_checks_arrays_items_and_anyof_ranges(replicate, fake_replicate):
    schema = {"components": {"schemas": {"Input": {"type": "object", "properties": {
        "steps": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 50}, {"type": "null"}]},
        "scales": {"type": "array", "items": {"type": "number", "maximum": 3}},
        "images": {"type": "array", "items": {"type": "string", "format": "uri"}, "maxItems": 2}}}},
        "Output": {"type": "string"}}}
    fake_replicate.add_model("someone/shapes", schema)
    for model_input, fields in [
        ({"steps": 80}, {"steps": "Must be less than or equal to 50"}),
        ({"steps": "20"}, {"steps": "Invalid type. Expected: integer, given: string"}),
        ({"scales": "[0.8]"}, {"scales": "Invalid type. Expected: array, given: string"}),
        ({"scales": [0.8, 4]}, {"scales": "Item 2: must be less than or equal to 3"}),
        ({"images": "[]"}, {"images": "Invalid type. Expected: array, given: string"}),
        ({"images": ["https://a.test/1.png"] * 3}, {"images": "Array must have at most 2 items"}),
    ]:
        with pytest.raises(InputError) as caught:
            replicate.create_prediction("someone/shapes", model_input)
        assert caught.value.fields == fields, model_input
    replicate.create_prediction("someone/shapes", {"steps": None, "scales": [0.8, 1.0], "images": []})
