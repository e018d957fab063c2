"""Replicate trainings: the training object, destination model names, and progress read from logs.

The API calls themselves live on ``ReplicateClient`` (create_training, get_training, …); this module
holds what needs no connection. Sources: Replicate's HTTP API (trainings, models create) and the
progress lines ai-toolkit prints under ostris/flux-dev-lora-trainer, e.g.
``flux_train_replicate:  12%|█▏   | 120/1000 [02:01<14:47,  1.01s/it, lr: 4.0e-04 loss: 4.1e-01]``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TRAINER = "ostris/flux-dev-lora-trainer"
# Replicate's rule for model names (and the owner part of a destination).
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")

# "120/1000 [02:01<14:47,  1.01s/it, lr: 4.0e-04 loss: 4.1e-01]" after a tqdm "12%|…|" bar.
_TRAIN_LINE = re.compile(
    r"(\d{1,3})%\|[^|\r\n]*\|\s*(\d+)/(\d+)\s*\[([^\]\r\n]*)\]")
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*(s/it|it/s)")
_LOSS = re.compile(r"\bloss[:=]\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)", re.IGNORECASE)
_REMAINING = re.compile(r"<\s*((?:\d+:)?\d+:\d+)")


class DestinationNameError(ValueError):
    """A model name Replicate would refuse; the message says what is allowed."""


def destination_name(text: str) -> str:
    """A model name as Replicate accepts it (lowercase letters, digits, "-", "_", "."), or raise
    DestinationNameError saying why not. Upper case is lowered and spaces become "-" first, since
    that is what a user typing "My Style" means."""
    name = re.sub(r"\s+", "-", (text or "").strip()).lower()
    if not name:
        raise DestinationNameError("Give the LoRA's model a name, e.g. my-style-lora.")
    if not MODEL_NAME.fullmatch(name):
        raise DestinationNameError(
            f"{text!r} cannot be a Replicate model name: use lowercase letters, digits, '-', '_' and '.', "
            "starting with a letter or digit (at most 100 characters).")
    return name


def split_destination(text: str) -> tuple[str, str]:
    """("owner", "name") of "owner/name", or ("", "name") for a bare name (the owner is then the token's
    account). Raises DestinationNameError when either part is not a name Replicate accepts."""
    owner, slash, name = (text or "").strip().rpartition("/")
    if slash and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}", owner):
        raise DestinationNameError(f"{owner!r} is not a Replicate account name.")
    return owner, destination_name(name)


def suggest_destination_name(text: str) -> str:
    """A valid model name made from any text (a dataset's name), e.g. "Ada's Style!" -> "ada-s-style-lora"."""
    name = re.sub(r"[^a-z0-9._-]+", "-", (text or "").lower()).strip("-._")[:90]
    return f"{name or 'my'}-lora"


@dataclass
class LossPoint:
    step: int
    loss: float


@dataclass
class TrainingProgress:
    """What the newest progress line says: step of total, seconds per step, loss; None when unknown."""
    step: int | None = None
    total: int | None = None
    seconds_per_step: float | None = None
    loss: float | None = None
    remaining: str | None = None  # tqdm's "14:47"
    losses: list[LossPoint] = field(default_factory=list)  # one point per step seen, in step order

    @property
    def percent(self) -> int | None:
        if self.step is None or not self.total:
            return None
        return min(100, self.step * 100 // self.total)

    @property
    def rate_text(self) -> str | None:
        """"1.01 s/step" or "2.5 steps/s", whichever reads better."""
        if not self.seconds_per_step:
            return None
        if self.seconds_per_step >= 1:
            return f"{self.seconds_per_step:.2f} s/step"
        return f"{1 / self.seconds_per_step:.2f} steps/s"


def parse_training_logs(logs: str | None) -> TrainingProgress:
    """Step/total, rate, loss and the loss curve from a trainer's logs (\\r- or \\n-separated tqdm lines).

    Lines without a loss still move the step; the loss curve keeps the last loss reported per step."""
    progress = TrainingProgress()
    if not logs:
        return progress
    losses: dict[int, float] = {}
    for match in _TRAIN_LINE.finditer(logs):
        step, total, extra = int(match.group(2)), int(match.group(3)), match.group(4)
        progress.step, progress.total = step, total
        rate = _RATE.search(extra)
        if rate:
            value = float(rate.group(1))
            progress.seconds_per_step = value if rate.group(2) == "s/it" else (1 / value if value else None)
        remaining = _REMAINING.search(extra)
        progress.remaining = remaining.group(1) if remaining else None
        loss = _LOSS.search(extra)
        if loss:
            try:
                value = float(loss.group(1))
            except ValueError:
                continue
            progress.loss = value
            if value == value and abs(value) != float("inf"):  # NaN/inf would break the chart
                losses[step] = value
    progress.losses = [LossPoint(step, losses[step]) for step in sorted(losses)]
    return progress


@dataclass
class Training:
    """A Replicate training object (GET /trainings/{id})."""
    id: str
    status: str  # starting | processing | succeeded | failed | canceled
    model: str | None
    version: str | None
    input: dict[str, Any]
    logs: str
    error: str | None
    output: Any
    urls: dict[str, str]
    created_at: str | None
    completed_at: str | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Training:
        error = data.get("error")
        return cls(id=str(data.get("id", "")), status=str(data.get("status", "")), model=data.get("model"),
                   version=data.get("version"), input=data.get("input") or {}, logs=data.get("logs") or "",
                   error=None if error is None else str(error), output=data.get("output"),
                   urls=data.get("urls") or {}, created_at=data.get("created_at"),
                   completed_at=data.get("completed_at"), raw=data)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "canceled")

    @property
    def progress(self) -> TrainingProgress:
        return parse_training_logs(self.logs)

    @property
    def output_version(self) -> str | None:
        """"owner/model:<version id>" of the version the training wrote, once it succeeded."""
        output = self.output if isinstance(self.output, dict) else {}
        version = output.get("version")
        return str(version) if version else None

    @property
    def weights_url(self) -> str | None:
        output = self.output if isinstance(self.output, dict) else {}
        weights = output.get("weights")
        return str(weights) if weights else None
