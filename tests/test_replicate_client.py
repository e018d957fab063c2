"""ReplicateClient against the fake Replicate server: paths, polling, errors, retries, files, downloads."""
from __future__ import annotations

import base64
import io
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from app.replicate.client import (
    AUTH_MESSAGE, BILLING_MESSAGE, AuthenticationError, BillingError, InputError, NotFoundError, OutputError,
    Prediction, ReplicateClient, ThrottledError, TransientError, output_urls, parse_model_ref, parse_progress,
)
from tests.fake_replicate import FakeReplicate, fill_colour, png_bytes

SCHNELL = "black-forest-labs/flux-schnell"
FILL_PRO = "black-forest-labs/flux-fill-pro"
SD_VERSION = "e5a34f913de0adc560d20e002c45ad43a80031b62caacc3d84010c6b6a64870c"
SD_INPAINTING = f"stability-ai/stable-diffusion-inpainting:{SD_VERSION}"
BLIP = "salesforce/blip:2e1dddc8621f72155f24cf2e0adbde548458d3cab9f00c0139eea840d0ac4746"


def make_client(fake: FakeReplicate, waits: list[float], **options) -> ReplicateClient:
    settings = {"allow_http_downloads": True, "download_hosts": {"127.0.0.1"}, "sleep": waits.append, **options}
    return ReplicateClient(fake.token, fake.base_url, **settings)


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def replicate(fake_replicate, waits):
    with make_client(fake_replicate, waits) as client:
        yield client


def run_to_end(client: ReplicateClient, prediction: Prediction) -> Prediction:
    for _ in range(100):
        if prediction.done:
            return prediction
        prediction = client.get_prediction(prediction.id)
    raise AssertionError(f"prediction {prediction.id} never finished")


def posts(fake: FakeReplicate, path_prefix: str = "/v1/") -> list:
    return fake.requests_to("POST", path_prefix)


class FlakyTransport(httpx.BaseTransport):
    """Raises ``error`` on the first request: before it leaves (after_sending=False) or after the
    server has received and answered it (after_sending=True); later requests go through."""

    def __init__(self, error: type[httpx.TransportError], *, after_sending: bool) -> None:
        self.inner = httpx.HTTPTransport()
        self.error, self.after_sending, self.failed = error, after_sending, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.failed:
            return self.inner.handle_request(request)
        self.failed = True
        if self.after_sending:
            response = self.inner.handle_request(request)
            response.read()
            response.close()
        raise self.error("injected", request=request)

    def close(self) -> None:
        self.inner.close()


# Pure helpers

def test_parse_model_ref_accepts_the_three_forms_and_explains_the_rest():
    assert parse_model_ref("black-forest-labs/flux-schnell") == ("black-forest-labs", "flux-schnell", None)
    assert parse_model_ref(SD_INPAINTING) == ("stability-ai", "stable-diffusion-inpainting", SD_VERSION)
    assert parse_model_ref(SD_VERSION) == (None, None, SD_VERSION)
    with pytest.raises(ValueError, match="owner/name"):
        parse_model_ref("flux-schnell")
    with pytest.raises(ValueError, match="64"):
        parse_model_ref("stability-ai/sdxl:1234")
    with pytest.raises(ValueError):
        parse_model_ref("a/b/c")


def test_parse_progress_reads_the_last_tqdm_percentage():
    logs = ("Using seed: 1\n  0%|          | 0/25 [00:00<?, ?it/s]\n"
            " 40%|████      | 10/25 [00:02<00:03,  4.1it/s]\n")
    assert parse_progress(logs) == 40
    assert parse_progress(" 4%|▍         | 1/25\r 12%|█▏        | 3/25\r 96%|█████████▌| 24/25 [00:05]") == 96
    assert parse_progress("Loading weights, using 50% of VRAM\n") is None
    assert parse_progress("") is None and parse_progress(None) is None


def test_output_urls_handles_lists_single_urls_and_text():
    urls = ["https://replicate.delivery/a/out-0.png", "https://replicate.delivery/a/out-1.png"]
    assert output_urls(urls) == urls
    assert output_urls(urls[0]) == [urls[0]]
    assert output_urls("Caption: a dog on a couch") == []
    assert output_urls(["Hello", " world"]) == []
    assert output_urls(None) == []


# Creating and following predictions

def test_official_model_is_created_on_the_models_path_with_token_and_user_agent(replicate, fake_replicate):
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "a fox"})
    [create] = posts(fake_replicate)
    assert create.path == f"/v1/models/{SCHNELL}/predictions"
    assert create.json == {"input": {"prompt": "a fox"}}
    assert create.headers["authorization"] == f"Bearer {fake_replicate.token}"
    assert create.headers["user-agent"].startswith("tessera/")
    assert prediction.status == "starting" and not prediction.done and prediction.model == SCHNELL


def test_pinned_version_and_bare_version_are_created_on_the_predictions_path(replicate, fake_replicate):
    image = png_bytes(Image.new("RGB", (64, 64), "white"))
    inputs = {"prompt": "p", "image": replicate.file_input(image, "image/png"),
              "mask": replicate.file_input(image, "image/png")}
    replicate.create_prediction(SD_INPAINTING, inputs)
    replicate.create_prediction(SD_VERSION, inputs)
    assert [(r.path, r.json["version"]) for r in posts(fake_replicate)] == [("/v1/predictions", SD_VERSION)] * 2


def test_webhook_options_are_sent_and_prefer_wait_returns_the_finished_prediction(replicate, fake_replicate):
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p"}, webhook="https://tessera.example/hook",
                                             webhook_events_filter=["completed"], wait=5)
    [create] = posts(fake_replicate)
    assert create.json["webhook"] == "https://tessera.example/hook"
    assert create.json["webhook_events_filter"] == ["completed"]
    assert create.headers["prefer"] == "wait=5"
    assert prediction.status == "succeeded" and len(output_urls(prediction.output)) == 1
    with pytest.raises(ValueError):
        replicate.create_prediction(SCHNELL, {"prompt": "p"}, wait=61)


def test_polling_goes_from_starting_through_processing_with_progress_to_images(replicate, fake_replicate):
    fake_replicate.polls_per_state = 2
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p", "num_outputs": 3, "seed": 42})
    seen = [(prediction.status, prediction.progress)]
    while not prediction.done:
        prediction = replicate.get_prediction(prediction.id)
        seen.append((prediction.status, prediction.progress))
    assert [status for status, _ in seen] == ["starting"] * 3 + ["processing"] * 2 + ["succeeded"]
    progress = [percent for status, percent in seen if status == "processing"]
    assert progress == sorted(progress) and 0 < progress[-1] < 100
    assert seen[-1] == ("succeeded", 100)

    urls = output_urls(prediction.output)
    assert len(urls) == 3
    colours = []
    for index, url in enumerate(urls):
        data, image_format = replicate.download_image(url)
        assert image_format == "PNG"
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (512, 512)
            colours.append(image.getpixel((10, 10)))
        assert colours[-1] == fill_colour(42, index)
    assert len(set(colours)) == 3


def test_single_url_and_text_outputs(replicate, fake_replicate):
    image = png_bytes(Image.new("RGB", (32, 32), (220, 30, 30)))
    image_input = {"image": replicate.file_input(image, "image/png")}
    pro = run_to_end(replicate, replicate.create_prediction(FILL_PRO, image_input))
    assert isinstance(pro.output, str) and len(output_urls(pro.output)) == 1

    caption = run_to_end(replicate, replicate.create_prediction(BLIP, image_input))
    assert caption.output == "Caption: a red square" and output_urls(caption.output) == []

    fake_replicate.output_mode = "text"
    text = run_to_end(replicate, replicate.create_prediction(SCHNELL, {"prompt": "p"}))
    assert isinstance(text.output, str) and output_urls(text.output) == []


def test_a_failed_prediction_carries_the_models_error(replicate, fake_replicate):
    fake_replicate.next_outcome = "failed"
    failed = run_to_end(replicate, replicate.create_prediction(SCHNELL, {"prompt": "p"}))
    assert failed.status == "failed" and failed.error == "CUDA out of memory" and failed.done
    succeeded = run_to_end(replicate, replicate.create_prediction(SCHNELL, {"prompt": "p"}))
    assert succeeded.status == "succeeded"  # next_outcome applies to one prediction only


def test_cancel_stops_a_running_prediction_and_is_retried_like_a_read(replicate, fake_replicate, waits):
    fake_replicate.polls_per_state = 50
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p"})
    fake_replicate.fail_next(503, path_prefix=f"/v1/predictions/{prediction.id}/cancel")
    canceled = replicate.cancel_prediction(prediction.id)
    assert canceled.status == "canceled" and canceled.done
    assert replicate.get_prediction(prediction.id).status == "canceled"
    assert len(posts(fake_replicate, f"/v1/predictions/{prediction.id}/cancel")) == 2 and len(waits) == 1


def test_inpainting_with_uploaded_files_returns_the_image_with_the_mask_filled(fake_replicate, waits):
    source = Image.new("RGB", (96, 64), (10, 20, 30))
    ImageDraw.Draw(source).rectangle((0, 0, 47, 63), fill=(200, 100, 50))
    mask = Image.new("L", (96, 64), 0)
    ImageDraw.Draw(mask).rectangle((60, 10, 79, 29), fill=255)
    with make_client(fake_replicate, waits, data_uri_limit=0) as client:  # every file goes through /files
        inputs = {"prompt": "p", "seed": 7, "width": 128, "height": 128,
                  "image": client.file_input(png_bytes(source), "image/png", "image.png"),
                  "mask": client.file_input(png_bytes(mask), "image/png", "mask.png")}
        assert all(inputs[name].startswith(f"{fake_replicate.base_url}/files/") for name in ("image", "mask"))
        prediction = run_to_end(client, client.create_prediction(SD_INPAINTING, inputs))
        data, _format = client.download_image(output_urls(prediction.output)[0])
    with Image.open(io.BytesIO(data)) as result:
        assert result.size == (96, 64)  # the input's size, so it can be pasted back
        assert result.getpixel((70, 20)) == fill_colour(7, 0)
        assert result.getpixel((10, 10)) == (200, 100, 50) and result.getpixel((90, 60)) == (10, 20, 30)
    assert len(posts(fake_replicate, "/v1/files")) == 2


def test_a_mask_of_another_size_fails_the_prediction_like_a_model_would(replicate):
    image = replicate.file_input(png_bytes(Image.new("RGB", (64, 64))), "image/png")
    mask = replicate.file_input(png_bytes(Image.new("L", (32, 32), 255)), "image/png")
    failed = run_to_end(replicate, replicate.create_prediction(SD_INPAINTING, {"image": image, "mask": mask}))
    assert failed.status == "failed" and "same size" in failed.error


def test_the_fake_runs_as_its_own_process_for_other_programs():
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen([sys.executable, "-m", "tests.fake_replicate", "--port", "0"], cwd=root,
                              stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        with ReplicateClient("r8_test_token", base_url) as client:
            assert client.get_model(SCHNELL).ref == SCHNELL
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


# Errors a user can act on

def test_a_wrong_token_raises_authentication_error_with_the_fix(fake_replicate, waits):
    with ReplicateClient("r8_wrong", fake_replicate.base_url, sleep=waits.append) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.create_prediction(SCHNELL, {"prompt": "p"})
    assert caught.value.message == AUTH_MESSAGE and caught.value.status == 401
    assert waits == []


def test_billing_error_message(replicate, fake_replicate):
    fake_replicate.fail_next(402)
    with pytest.raises(BillingError) as caught:
        replicate.create_prediction(SCHNELL, {"prompt": "p"})
    assert caught.value.message == BILLING_MESSAGE


def test_unknown_model_and_prediction_are_not_found_with_their_names(replicate):
    with pytest.raises(NotFoundError) as caught:
        replicate.create_prediction("nobody/nothing", {"prompt": "p"})
    assert caught.value.message == "Replicate has no model nobody/nothing (or your token cannot see it)."
    with pytest.raises(NotFoundError, match="no prediction abc123"):
        replicate.get_prediction("abc123")


def test_invalid_input_names_the_field(replicate):
    with pytest.raises(InputError) as caught:
        replicate.create_prediction(SCHNELL, {"prompt": "p", "num_outputs": 5})
    assert caught.value.fields == {"num_outputs": "Must be less than or equal to 4"}
    assert caught.value.message == "Replicate rejected num_outputs: Must be less than or equal to 4"

    with pytest.raises(InputError) as caught:
        replicate.create_prediction(SCHNELL, {"prompt": "p", "num_outputs": 0, "output_quality": 101})
    assert set(caught.value.fields) == {"num_outputs", "output_quality"}
    assert "num_outputs: Must be greater than or equal to 1" in caught.value.message
    assert "output_quality: Must be less than or equal to 100" in caught.value.message


def test_invalid_fields_are_read_from_the_detail_when_the_list_is_missing(replicate, fake_replicate):
    fake_replicate.fail_next(422, body={"title": "Input validation failed", "status": 422,
                                        "detail": "- input.seed: Invalid type. Expected: integer\n"})
    with pytest.raises(InputError) as caught:
        replicate.create_prediction(SCHNELL, {"prompt": "p"})
    assert caught.value.fields == {"seed": "Invalid type. Expected: integer"}


def test_unknown_version_is_an_input_error_about_the_version(replicate):
    with pytest.raises(InputError) as caught:
        replicate.create_prediction("stability-ai/sdxl:" + "0" * 64, {"prompt": "p"})
    assert caught.value.message.startswith("Replicate rejected the model version: The specified version does not exist")


# Retries

def test_throttled_get_waits_as_long_as_retry_after_says(replicate, fake_replicate, waits):
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p"})
    fake_replicate.fail_next(429, times=2, retry_after=7)
    assert replicate.get_prediction(prediction.id).id == prediction.id
    assert waits == [7.0, 7.0]


def test_throttled_create_is_retried_and_creates_one_prediction(replicate, fake_replicate, waits):
    fake_replicate.fail_next(429, retry_after=2)
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p"})
    assert waits == [2.0]
    assert len(posts(fake_replicate)) == 2 and list(fake_replicate.predictions) == [prediction.id]


def test_throttle_hint_in_the_detail_is_honoured_up_to_max_backoff(fake_replicate, waits):
    fake_replicate.fail_next(429, times=10)  # detail: "... resets in ~30s."
    with make_client(fake_replicate, waits, max_retries=2, max_backoff=10) as client:
        with pytest.raises(ThrottledError) as caught:
            client.create_prediction(SCHNELL, {"prompt": "p"})
    assert waits == [10.0, 10.0]
    assert caught.value.retry_after == 30.0 and "about 30 seconds" in caught.value.message
    assert fake_replicate.predictions == {}


def test_server_errors_on_get_are_retried_with_growing_backoff(replicate, fake_replicate, waits):
    prediction = replicate.create_prediction(SCHNELL, {"prompt": "p"})
    fake_replicate.fail_next(500, times=3)
    assert replicate.get_prediction(prediction.id).id == prediction.id
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):  # backoff 0.5 s doubling, with jitter of up to half
        assert 0.5 * 2 ** attempt * 0.5 <= wait <= 0.5 * 2 ** attempt


def test_server_errors_on_get_give_up_after_max_retries(fake_replicate, waits):
    fake_replicate.fail_next(503, times=10)
    with make_client(fake_replicate, waits, max_retries=2) as client:
        with pytest.raises(TransientError) as caught:
            client.get_prediction("abc")
    assert caught.value.status == 503 and len(fake_replicate.requests) == 3 and len(waits) == 2


def test_server_error_on_create_is_not_retried(replicate, fake_replicate, waits):
    fake_replicate.fail_next(500)
    with pytest.raises(TransientError) as caught:
        replicate.create_prediction(SCHNELL, {"prompt": "p"})
    assert "may have been created" in caught.value.message
    assert len(posts(fake_replicate)) == 1 and waits == []


def test_create_that_times_out_after_reaching_the_server_is_not_repeated(fake_replicate, waits):
    transport = FlakyTransport(httpx.ReadTimeout, after_sending=True)
    with make_client(fake_replicate, waits, transport=transport) as client:
        with pytest.raises(TransientError, match="may have been created"):
            client.create_prediction(SCHNELL, {"prompt": "p"})
    assert len(posts(fake_replicate)) == 1 and len(fake_replicate.predictions) == 1  # it was, in fact, created
    assert waits == []


def test_create_whose_connection_failed_before_sending_is_retried(fake_replicate, waits):
    transport = FlakyTransport(httpx.ConnectError, after_sending=False)
    with make_client(fake_replicate, waits, transport=transport) as client:
        prediction = client.create_prediction(SCHNELL, {"prompt": "p"})
    assert len(posts(fake_replicate)) == 1 and list(fake_replicate.predictions) == [prediction.id]
    assert len(waits) == 1


def test_an_unreachable_server_gives_up_with_a_transient_error(waits):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ReplicateClient("t", f"http://127.0.0.1:{port}/v1", max_retries=2, sleep=waits.append) as client:
        with pytest.raises(TransientError, match="Could not connect"):
            client.get_prediction("abc")
    assert len(waits) == 2


# Models

def test_get_model_reads_the_latest_version_or_a_pinned_one_and_caches_it(replicate, fake_replicate):
    info = replicate.get_model(SCHNELL)
    assert info.ref == SCHNELL and info.version_id and info.description
    assert "aspect_ratio" in info.input_schema["properties"]
    assert replicate.get_model(SCHNELL) is info
    pinned = replicate.get_model(SD_INPAINTING)
    assert pinned.version_id == SD_VERSION and "mask" in pinned.input_schema["properties"]
    assert [r.path for r in fake_replicate.requests] == [
        f"/v1/models/{SCHNELL}", f"/v1/models/stability-ai/stable-diffusion-inpainting/versions/{SD_VERSION}"]
    with pytest.raises(NotFoundError, match="no model nobody/nothing"):
        replicate.get_model("nobody/nothing")
    with pytest.raises(ValueError):
        replicate.get_model(SD_VERSION)


# Files as inputs

def test_small_files_are_inlined_as_data_uris_and_large_ones_uploaded(fake_replicate, waits):
    with make_client(fake_replicate, waits, data_uri_limit=1000) as client:
        small = client.file_input(b"\x89PNG" + bytes(996), "image/png")
        large_data = bytes(range(256)) * 8  # 2048 bytes, with every byte value, CR and LF included
        large = client.file_input(large_data, "image/png", "big.png")
    assert small == "data:image/png;base64," + base64.b64encode(b"\x89PNG" + bytes(996)).decode()
    [upload] = posts(fake_replicate)
    assert upload.path == "/v1/files" and upload.headers["content-type"].startswith("multipart/form-data")
    assert large.startswith(f"{fake_replicate.base_url}/files/")
    assert fake_replicate.file_bytes(large.rsplit("/", 1)[1]) == large_data


# Downloads

def test_download_is_capped_in_size(fake_replicate, waits):
    exact = fake_replicate.publish("exact.bin", b"x" * 4096)
    too_big = fake_replicate.publish("big.bin", b"x" * 4097)
    with make_client(fake_replicate, waits, max_download_bytes=4096) as client:
        assert client.download(exact) == b"x" * 4096
        with pytest.raises(OutputError, match="larger than"):
            client.download(too_big)


def test_download_does_not_send_the_token(replicate, fake_replicate):
    replicate.download(fake_replicate.publish("a.bin", b"abc"))
    [request] = fake_replicate.requests
    assert "authorization" not in request.headers


def test_a_non_image_output_is_rejected(replicate, fake_replicate):
    url = fake_replicate.publish("out.png", b"<html>not an image</html>", "image/png")
    assert replicate.download(url) == b"<html>not an image</html>"
    with pytest.raises(OutputError, match="not an image"):
        replicate.download_image(url)


def test_downloads_only_from_allowed_hosts_over_https(fake_replicate, waits):
    url = fake_replicate.publish("out.png", png_bytes(Image.new("RGB", (4, 4))))
    with make_client(fake_replicate, waits, download_hosts={"replicate.delivery"}) as client:
        with pytest.raises(OutputError, match="127.0.0.1 is not one of the allowed download hosts"):
            client.download(url)
    with make_client(fake_replicate, waits, allow_http_downloads=False) as client:
        with pytest.raises(OutputError, match="not https"):
            client.download(url)
        for bad in ("file:///etc/passwd", "ftp://127.0.0.1/out.png", "data:image/png;base64,AAAA", "/files/out/x"):
            with pytest.raises(OutputError):
                client.download(bad)
    assert fake_replicate.requests == []


def test_download_does_not_follow_redirects(replicate, fake_replicate):
    url = fake_replicate.publish("out.png", b"data")
    fake_replicate.fail_next(302, path_prefix="/files/out/")
    with pytest.raises(OutputError, match="redirects"):
        replicate.download(url)


def test_download_of_an_expired_output_says_it_is_gone(replicate, fake_replicate):
    with pytest.raises(OutputError, match="gone"):
        replicate.download(f"{fake_replicate.origin}/files/out/expired.png")


# Every status family, as the user reads it, from both download functions (one table serves both).
DOWNLOAD_FAILURES = [
    (302, OutputError, 1, "The file at {url} redirects elsewhere (302); Tessera does not follow redirects for downloads."),
    (404, OutputError, 1, "The file at {url} is gone (404). Replicate deletes output files about an hour after the "
                          "prediction ends."),
    (410, OutputError, 1, "The file at {url} is gone (410)."),
    (403, OutputError, 1, "Downloading {url} failed (403)."),
    (429, ThrottledError, 5, "The file host is throttling downloads of {url}; try again shortly."),
    (500, TransientError, 5, "The file host failed (500) while sending {url}, even after 5 tries; try again shortly."),
    (503, TransientError, 5, "The file host failed (503) while sending {url}, even after 5 tries; try again shortly."),
]


@pytest.mark.parametrize("to_file", [False, True], ids=["download", "download_to_file"])
@pytest.mark.parametrize("status,error,tries,sentence", DOWNLOAD_FAILURES, ids=[str(f[0]) for f in DOWNLOAD_FAILURES])
def test_a_failed_download_reads_the_same_from_both_download_functions(replicate, fake_replicate, tmp_path,
                                                                      to_file, status, error, tries, sentence):
    url = fake_replicate.publish("out.bin", b"payload")
    fake_replicate.fail_next(status, times=100, path_prefix="/files/out/")
    with pytest.raises(error) as caught:
        if to_file:
            replicate.download_to_file(url, tmp_path / "out.bin", max_bytes=1000)
        else:
            replicate.download(url)
    assert caught.value.message == sentence.format(url=url) or (
        status == 410 and caught.value.message.startswith(sentence.format(url=url)))
    assert caught.value.status == status and len(fake_replicate.requests) == tries
    assert list(tmp_path.iterdir()) == []  # download_to_file leaves neither the file nor a part of it


def test_download_is_retried_on_server_errors(replicate, fake_replicate, waits):
    url = fake_replicate.publish("out.bin", b"payload")
    fake_replicate.fail_next(503, times=2, path_prefix="/files/out/")
    assert replicate.download(url) == b"payload"
    assert len(waits) == 2 and len(fake_replicate.requests) == 3
