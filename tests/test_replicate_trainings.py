"""The trainings API of ReplicateClient against the fake Replicate: models, account, hardware, files,
trainings create/get/cancel/list, progress from the trainer's log lines, errors as sentences."""
from __future__ import annotations

import io
import tarfile
import zipfile

import httpx
import pytest
from PIL import Image

from app.replicate.client import (
    ForbiddenError, InputError, NotFoundError, OutputError, ReplicateClient, ThrottledError, TransientError,
)
from app.replicate.trainers import FLUX_LORA_TRAINER, FLUX_LORA_TRAINER_VERSION
from app.replicate.trainings import (
    DestinationNameError, destination_name, parse_training_logs, suggest_destination_name,
)
from tests.fake_replicate import ACCOUNT, FakeReplicate, png_bytes

TRAINER = f"{FLUX_LORA_TRAINER}:{FLUX_LORA_TRAINER_VERSION}"


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def replicate(fake_replicate, waits):
    with ReplicateClient(fake_replicate.token, fake_replicate.base_url, allow_http_downloads=True,
                         download_hosts={"127.0.0.1"}, sleep=waits.append) as client:
        yield client


def training_zip(path, count=3, captions=True) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for number in range(count):
            archive.writestr(f"img{number}.png", png_bytes(Image.new("RGB", (64, 64), (number * 40, 0, 0))))
            if captions:
                archive.writestr(f"img{number}.txt", f"TOK, a red square {number}")


def start(replicate: ReplicateClient, tmp_path, **training_input):
    training_zip(tmp_path / "data.zip")
    uploaded = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")
    replicate.ensure_model(ACCOUNT, "my-lora")
    return replicate.create_training(TRAINER, f"{ACCOUNT}/my-lora",
                                     {"input_images": uploaded["urls"]["get"], "steps": 100, **training_input})


def run_training(replicate: ReplicateClient, training):
    for _ in range(50):
        if training.done:
            return training
        training = replicate.get_training(training.id)
    raise AssertionError("the training never ended")


def test_account_and_hardware(replicate):
    assert replicate.get_account()["username"] == ACCOUNT
    assert "cpu" in {item["sku"] for item in replicate.list_hardware()}


def test_ensure_model_creates_a_private_model_once_then_reuses_it(replicate, fake_replicate):
    model, created = replicate.ensure_model(ACCOUNT, "my-lora", description="A LoRA")
    assert created and model["visibility"] == "private" and model["latest_version"] is None
    again, created_again = replicate.ensure_model(ACCOUNT, "my-lora")
    assert not created_again and again["name"] == "my-lora"
    creates = fake_replicate.requests_to("POST", "/v1/models")
    assert len(creates) == 1
    assert creates[0].json == {"owner": ACCOUNT, "name": "my-lora", "visibility": "private", "hardware": "cpu",
                               "description": "A LoRA"}


def test_ensure_model_that_appears_meanwhile_is_reused(replicate, fake_replicate):
    # Another tab created it between the lookup and the create: the 409 falls back to the lookup.
    fake_replicate.fail_next(404, path_prefix=f"/v1/models/{ACCOUNT}/raced")
    replicate._call("POST", "models", json={"owner": ACCOUNT, "name": "raced", "visibility": "private",
                                            "hardware": "cpu"}, repeatable=True, not_found="")
    model, created = replicate.ensure_model(ACCOUNT, "raced")
    assert model["name"] == "raced" and not created


def test_model_under_another_account_is_a_403_sentence(replicate):
    with pytest.raises(ForbiddenError) as caught:
        replicate.ensure_model("someone-else", "my-lora")
    assert "may not create models under 'someone-else'" in caught.value.message
    assert caught.value.status == 403


def test_a_name_replicate_refuses_is_a_422_sentence(replicate):
    with pytest.raises(InputError) as caught:
        replicate.ensure_model(ACCOUNT, "Bad Name")
    assert "refused the model name" in caught.value.message and "lowercase" in caught.value.message


def test_destination_name_rules():
    assert destination_name("My Style") == "my-style"
    assert destination_name("a.b_c-1") == "a.b_c-1"
    for bad in ("", "  ", "-lead", "über", "a/b", "x" * 101):
        with pytest.raises(DestinationNameError):
            destination_name(bad)
    assert suggest_destination_name("Ada's Style!") == "ada-s-style-lora"
    assert destination_name(suggest_destination_name("日本")) == "my-lora"


def test_upload_path_streams_the_file_and_the_fake_keeps_its_bytes(replicate, fake_replicate, tmp_path):
    training_zip(tmp_path / "data.zip")
    uploaded = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")
    assert uploaded["size"] == (tmp_path / "data.zip").stat().st_size
    assert fake_replicate.file_bytes(uploaded["id"]) == (tmp_path / "data.zip").read_bytes()


def test_upload_is_retried_after_a_server_error_with_the_whole_file(replicate, fake_replicate, tmp_path, waits):
    training_zip(tmp_path / "data.zip")
    fake_replicate.fail_next(503, path_prefix="/v1/files")
    uploaded = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")
    assert len(waits) == 1
    assert fake_replicate.file_bytes(uploaded["id"]) == (tmp_path / "data.zip").read_bytes()


def test_a_training_runs_to_a_new_version_with_progress_in_its_logs(replicate, fake_replicate, tmp_path):
    training = start(replicate, tmp_path, trigger_word="TOK")
    assert training.status == "starting" and training.output is None
    body = fake_replicate.requests_to("POST", f"/v1/models/{FLUX_LORA_TRAINER}/versions/")[0].json
    assert body["destination"] == f"{ACCOUNT}/my-lora" and body["input"]["steps"] == 100
    seen = []
    while not training.done:
        training = replicate.get_training(training.id)
        seen.append(training.progress.step)
    assert training.status == "succeeded"
    assert fake_replicate.training_zip(training.id) == {f"img{n}.png": f"TOK, a red square {n}" for n in range(3)}
    steps = [step for step in seen if step is not None]
    assert steps == sorted(steps) and steps[-1] == 100 and len(set(steps)) >= 3
    progress = training.progress
    assert progress.total == 100 and progress.seconds_per_step == pytest.approx(1.01)
    assert progress.losses[0].loss > progress.losses[-1].loss
    owner_model, _, version = training.output_version.partition(":")
    assert owner_model == f"{ACCOUNT}/my-lora" and len(version) == 64
    # The new version is runnable and its weights are a tar with lora.safetensors.
    assert replicate.get_model(f"{ACCOUNT}/my-lora:{version}").input_schema["properties"]["lora_scale"]
    archive = tarfile.open(fileobj=io.BytesIO(replicate.download(training.weights_url)))
    assert "output/flux_train_replicate/lora.safetensors" in archive.getnames()


def test_training_create_is_not_repeated_after_a_server_error(replicate, fake_replicate, tmp_path):
    training_zip(tmp_path / "data.zip")
    url = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")["urls"]["get"]
    replicate.ensure_model(ACCOUNT, "my-lora")
    fake_replicate.fail_next(500, path_prefix="/v1/models/ostris")
    with pytest.raises(TransientError) as caught:
        replicate.create_training(TRAINER, f"{ACCOUNT}/my-lora", {"input_images": url})
    assert "check replicate.com/trainings" in caught.value.message
    assert len(fake_replicate.requests_to("POST", "/v1/models/ostris")) == 1


def test_training_create_is_retried_when_throttled(replicate, fake_replicate, tmp_path, waits):
    fake_replicate.fail_next(429, path_prefix="/v1/models/ostris", retry_after=2)
    training = start(replicate, tmp_path)
    assert training.status == "starting" and 2 in waits


def test_throttling_that_outlasts_the_retries_says_when_to_come_back(replicate, fake_replicate):
    fake_replicate.fail_next(429, times=10, path_prefix="/v1/trainings")
    with pytest.raises(ThrottledError) as caught:
        replicate.get_training("abc")
    assert "try again in about 30 seconds" in caught.value.message


def test_training_into_someone_elses_model_is_refused(replicate, fake_replicate, tmp_path):
    fake_replicate.add_model("someone-else/their-lora", {"components": {"schemas": {}}})
    training_zip(tmp_path / "data.zip")
    url = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")["urls"]["get"]
    with pytest.raises(ForbiddenError) as caught:
        replicate.create_training(TRAINER, "someone-else/their-lora", {"input_images": url})
    assert "may not write new versions to someone-else/their-lora" in caught.value.message


def test_training_input_is_checked_against_the_training_schema(replicate, fake_replicate, tmp_path):
    with pytest.raises(InputError) as caught:
        start(replicate, tmp_path, steps=1)
    assert caught.value.fields == {"steps": "Must be greater than or equal to 3"}


def test_a_trainer_version_is_resolved_when_not_given(replicate, fake_replicate, tmp_path):
    training_zip(tmp_path / "data.zip")
    url = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")["urls"]["get"]
    replicate.ensure_model(ACCOUNT, "my-lora")
    training = replicate.create_training(FLUX_LORA_TRAINER, f"{ACCOUNT}/my-lora", {"input_images": url})
    assert training.version == FLUX_LORA_TRAINER_VERSION


def test_a_zip_without_images_at_its_root_fails_the_training(replicate, fake_replicate, tmp_path):
    with zipfile.ZipFile(tmp_path / "data.zip", "w") as archive:
        archive.writestr("nested/a.png", png_bytes(Image.new("RGB", (8, 8))))
    url = replicate.upload_path(tmp_path / "data.zip", "data.zip", "application/zip")["urls"]["get"]
    replicate.ensure_model(ACCOUNT, "my-lora")
    training = run_training(replicate, replicate.create_training(TRAINER, f"{ACCOUNT}/my-lora",
                                                                 {"input_images": url}))
    assert training.status == "failed" and "images must be at the zip's root" in training.error


def test_failure_and_cancel_on_demand(replicate, fake_replicate, tmp_path):
    fake_replicate.next_training_outcome = "failed"
    failed = run_training(replicate, start(replicate, tmp_path))
    assert failed.status == "failed" and "CUDA out of memory" in failed.error and failed.output is None
    fake_replicate.polls_per_state = 5
    running = start(replicate, tmp_path)
    canceled = replicate.cancel_training(running.id)
    assert canceled.status == "canceled"
    assert replicate.get_training(running.id).status == "canceled"


def test_list_trainings_pages_newest_first(replicate, fake_replicate, tmp_path):
    fake_replicate.trainings_page_size = 2
    ids = [start(replicate, tmp_path).id for _ in range(3)]
    first, cursor = replicate.list_trainings()
    assert [t.id for t in first] == ids[::-1][:2] and cursor
    second, end = replicate.list_trainings(cursor)
    assert [t.id for t in second] == [ids[0]] and end is None
    with pytest.raises(ValueError):
        replicate.list_trainings("https://elsewhere.example/v1/trainings?cursor=2")


def test_unknown_training_is_a_404_sentence(replicate):
    with pytest.raises(NotFoundError) as caught:
        replicate.get_training("nope")
    assert "no training nope" in caught.value.message


def test_download_to_file_streams_and_refuses_oversized_files(replicate, fake_replicate, tmp_path):
    url = fake_replicate.publish("w.tar", b"x" * 5000)
    assert replicate.download_to_file(url, tmp_path / "w.tar", max_bytes=10_000) == 5000
    assert (tmp_path / "w.tar").read_bytes() == b"x" * 5000
    with pytest.raises(OutputError) as caught:
        replicate.download_to_file(url, tmp_path / "big.tar", max_bytes=1000)
    assert "larger than" in caught.value.message
    assert not (tmp_path / "big.tar").exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(OutputError) as gone:
        replicate.download_to_file(fake_replicate.origin + "/files/out/missing.tar", tmp_path / "m", max_bytes=10)
    assert "is gone" in gone.value.message


def test_parse_training_logs_reads_ai_toolkit_lines():
    logs = ("flux_train_replicate:   0%|          | 0/1000 [00:00<?, ?it/s]\r"
            "flux_train_replicate:  12%|█▏        | 120/1000 [02:01<14:47,  1.01s/it, lr: 4.0e-04 loss: 4.1e-01]\r"
            "flux_train_replicate:  13%|█▎        | 130/1000 [02:11<14:37,  2.50it/s, lr: 4.0e-04 loss: nan]\n"
            "flux_train_replicate:  14%|█▍        | 140/1000 [02:21<14:27,  1.00s/it, lr: 4.0e-04 loss: 3.5e-01]\n"
            "Saving at step 140 ... 50% of VRAM used\n")
    progress = parse_training_logs(logs)
    assert (progress.step, progress.total, progress.percent) == (140, 1000, 14)
    assert progress.loss == pytest.approx(0.35) and progress.seconds_per_step == pytest.approx(1.0)
    assert progress.remaining == "14:27"
    assert [(p.step, p.loss) for p in progress.losses] == [(120, pytest.approx(0.41)), (140, pytest.approx(0.35))]
    assert parse_training_logs("").step is None and parse_training_logs(None).percent is None
    assert parse_training_logs("x 100%|██| 5/5 [00:01<00:00, 4.00it/s]").rate_text == "4.00 steps/s"
