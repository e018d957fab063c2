"""How a job reads to a person: its kind's name, one progress line, and its times.

Plain functions over anything with the Job columns (an ORM row or the snapshot the status poll reads);
nothing here knows Flask. Times are naive UTC datetimes as stored; durations are seconds (float).
"""
from __future__ import annotations

from datetime import datetime

# Job kinds are `area.verb`; these are the names the pages show. A kind missing here still reads
# as words ("lora.train" -> "Lora train"), never as the dotted identifier.
KIND_NAMES = {
    "generate": "Image generation",
    "generate.image": "Image generation",
    "canvas.generate": "Canvas generation",
    "datasets.scan": "Dataset scan",
    "datasets.thumbs": "Dataset thumbnails",
    "datasets.caption": "Auto-caption",
    "datasets.export": "Dataset export",
    "datasets.import": "Zip import",
    "datasets.check": "Check for changes on disk",
    "datasets.bulk": "Caption edit",
    "datasets.undo": "Undo of a caption edit",
    "lora.train": "LoRA training",
    "loras.train": "LoRA training",
}

# The filter of the jobs page: a state name -> the statuses it covers.
STATE_FILTERS = {
    "active": ("queued", "running"),
    "queued": ("queued",),
    "running": ("running",),
    "succeeded": ("succeeded",),
    "failed": ("failed",),
    "canceled": ("canceled",),
}
STATE_LABELS = {"": "All", "active": "Queued or running", "queued": "Queued", "running": "Running",
                "succeeded": "Succeeded", "failed": "Failed", "canceled": "Canceled"}

_ENDED = ("succeeded", "failed", "canceled")


def kind_name(kind: str | None) -> str:
    """The human name of a job kind: ``"canvas.generate"`` -> ``"Canvas generation"``."""
    if not kind:
        return "Job"
    if kind in KIND_NAMES:
        return KIND_NAMES[kind]
    words = " ".join(kind.replace(".", " ").replace("_", " ").split())
    return words[:1].upper() + words[1:]


def progress_line(job) -> str:
    """The one line saying where a job is: "Queued", "Starting on Replicate (cold boot)", "Step 12 of
    25", "Downloading image 1 of 2", "Done · 2 images", "Canceled". The worker writes the phase of a
    running job into ``message``; the elapsed time is added by the page (see ``elapsed_seconds``)."""
    message = (job.message or "").strip()
    if job.status == "queued":
        return "Queued" + (" again" if message == "Queued again" else "")
    if job.status == "running":
        if job.cancel_requested:
            return "Canceling…"
        return message or "Running"
    if job.status == "succeeded":
        return "Done" if message in ("", "Done") else f"Done · {message}"
    if job.status == "canceled":
        return message or "Canceled"
    return "Failed"


def elapsed_seconds(job, now: datetime) -> float:
    """Seconds the job has spent in its current phase of life: waiting in the queue since it was
    queued, running since it started, or (ended) how long it ran."""
    if job.status == "queued":
        return _seconds(_queued_at(job), now)
    if job.status == "running":
        return _seconds(job.started_at or job.created_at, now)
    return run_seconds(job, now) or 0.0


def wait_seconds(job, now: datetime) -> float | None:
    """Seconds between its last queueing (created or retried) and starting (still growing while
    queued); None if it never started."""
    if job.started_at is not None:
        return _seconds(_queued_at(job), job.started_at)
    if job.status == "queued":
        return _seconds(_queued_at(job), now)
    return None


def _queued_at(job) -> datetime | None:
    # Rows from before Job.queued_at were queued once, when created.
    return getattr(job, "queued_at", None) or job.created_at


def run_seconds(job, now: datetime) -> float | None:
    """Seconds the worker spent on the job (still growing while it runs); None if it never started."""
    if job.started_at is None:
        return None
    end = job.finished_at if job.status in _ENDED else now
    return _seconds(job.started_at, end or now)


def clock(seconds: float | None) -> str:
    """A running clock: 7 -> "0:07", 754 -> "12:34", 3725 -> "1:02:05"."""
    total = int(max(seconds or 0, 0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def duration(seconds: float | None) -> str:
    """A duration to read: 0.42 -> "0.4 s", 12.3 -> "12 s", 125 -> "2 min 5 s", 3720 -> "1 h 2 min";
    None -> "—"."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(total // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max((end - start).total_seconds(), 0.0)
