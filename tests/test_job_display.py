"""How jobs read on the pages: human kind names, one progress line, durations; tqdm step counters."""
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from app.jobs.display import clock, duration, elapsed_seconds, kind_name, progress_line, run_seconds, wait_seconds
from app.replicate.client import Prediction, parse_steps

T0 = datetime(2026, 11, 30, 12, 0, 0)


def job(status, message="", *, created=0, started=None, finished=None, cancel=False):
    at = lambda s: None if s is None else T0 + timedelta(seconds=s)  # noqa: E731
    return SimpleNamespace(status=status, message=message, cancel_requested=cancel, created_at=at(created),
                           started_at=at(started), finished_at=at(finished), progress=0)


@pytest.mark.parametrize("kind, name", [
    ("generate", "Image generation"), ("generate.image", "Image generation"),
    ("canvas.generate", "Canvas generation"), ("datasets.caption", "Auto-caption"),
    ("datasets.export", "Dataset export"), ("lora.train", "LoRA training"),
    ("something_new.do_it", "Something new do it"), ("", "Job"), (None, "Job"),
])
def test_kind_names_are_words(kind, name):
    assert kind_name(kind) == name
    assert "." not in kind_name(kind)


@pytest.mark.parametrize("row, line", [
    (job("queued", "Queued"), "Queued"),
    (job("queued", "Queued again"), "Queued again"),
    (job("running", "Starting on Replicate (cold boot)"), "Starting on Replicate (cold boot)"),
    (job("running", "Step 12 of 25"), "Step 12 of 25"),
    (job("running", "Step 12 of 25", cancel=True), "Canceling…"),
    (job("running", ""), "Running"),
    (job("succeeded", "2 images"), "Done · 2 images"),
    (job("succeeded", "Done"), "Done"),
    (job("canceled", "Canceled before it started"), "Canceled before it started"),
    (job("failed", "whatever"), "Failed"),
])
def test_one_progress_line_without_percentages(row, line):
    assert progress_line(row) == line
    assert "%" not in progress_line(row)


def test_times_of_each_phase():
    now = T0 + timedelta(seconds=100)
    queued = job("queued", created=70)
    assert elapsed_seconds(queued, now) == 30 and wait_seconds(queued, now) == 30 and run_seconds(queued, now) is None
    running = job("running", created=0, started=12)
    assert elapsed_seconds(running, now) == 88 and wait_seconds(running, now) == 12 and run_seconds(running, now) == 88
    done = job("succeeded", created=0, started=12, finished=43.5)
    assert elapsed_seconds(done, now) == 31.5 and wait_seconds(done, now) == 12 and run_seconds(done, now) == 31.5
    never_ran = job("canceled", created=0, finished=5)
    assert wait_seconds(never_ran, now) is None and run_seconds(never_ran, now) is None


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (7.9, "0:07"), (754, "12:34"), (3725, "1:02:05"), (None, "0:00")])
def test_clock(seconds, text):
    assert clock(seconds) == text


@pytest.mark.parametrize("seconds, text", [
    (None, "—"), (0.42, "0.4 s"), (9.96, "10.0 s"), (12.3, "12 s"), (60, "1 min"), (125, "2 min 5 s"),
    (3600, "1 h"), (3720, "1 h 2 min"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_steps_from_tqdm_logs():
    bar = " 40%|████      | 10/25 [00:02<00:03,  4.1it/s]"
    assert parse_steps(bar) == (10, 25)
    # \r-separated updates: the last counter wins
    assert parse_steps(bar + "\r 48%|████▊     | 12/25 [00:03<00:03,  4.1it/s]") == (12, 25)
    # a second bar (a refiner pass) is the one in progress
    assert parse_steps("100%|██████████| 25/25 [00:06<00:00]\n 20%|██        | 1/5 [00:00<00:01]\n") == (1, 5)
    assert parse_steps("Using seed: 42\n") is None
    assert parse_steps("") is None and parse_steps(None) is None
    assert parse_steps("50%|█████     | 3/0 [00:00]") is None  # no total, no counter


def test_prediction_predict_time():
    assert Prediction.from_api({"id": "p", "metrics": {"predict_time": 2.5}}).predict_time == 2.5
    assert Prediction.from_api({"id": "p", "metrics": {}}).predict_time is None
    assert Prediction.from_api({"id": "p"}).predict_time is None
    assert Prediction.from_api({"id": "p", "metrics": {"predict_time": "x"}}).predict_time is None
