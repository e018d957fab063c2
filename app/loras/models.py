"""LoRAs a user trained or imported (which images used which LoRA is kept on each Generation row)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow


class Lora(db.Model):
    """One LoRA. A trained one moves preparing → training → downloading → ready (or failed/canceled);
    only ``ready`` ones are offered for use. An imported one is ready at once: Replicate loads it by
    ``reference``."""

    PREPARING, TRAINING, DOWNLOADING, READY, FAILED, CANCELED = (
        "preparing", "training", "downloading", "ready", "failed", "canceled")
    ENDED = (READY, FAILED, CANCELED)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))  # the name in <lora:name:scale> and in pickers
    source: Mapped[str] = mapped_column(String(16))  # "trained" | "replicate" | "huggingface" | "civitai" | "url"
    status: Mapped[str] = mapped_column(String(16), default=PREPARING, index=True)
    trigger: Mapped[str] = mapped_column(String(200), default="")
    # What a model's lora_weights input gets: "owner/model/<version id>", an HF/CivitAI URL, a .safetensors URL.
    reference: Mapped[str] = mapped_column(String(1000), default="")
    # Training: the dataset (a copy of its name outlives it), trainer, inputs (no secrets), destination.
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("dataset.id", ondelete="SET NULL"), index=True)
    dataset_name: Mapped[str] = mapped_column(String(200), default="")
    image_count: Mapped[int] = mapped_column(default=0)
    trainer: Mapped[str] = mapped_column(String(200), default="")  # owner/name:version
    training_input: Mapped[dict] = mapped_column(JSON, default=dict)
    destination: Mapped[str] = mapped_column(String(200), default="")  # owner/model
    version: Mapped[str] = mapped_column(String(300), default="")  # owner/model:<version id>, once trained
    # Stored the moment Replicate answers the create, so a retry or a restarted worker polls this one.
    training_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    # The latest progress read from the trainer's logs: {step, total, seconds_per_step, loss, losses: [[s, l]…]}.
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # Under DATA_DIR: the captions snapshot (JSON: name in zip -> caption) and the downloaded weights.
    captions_path: Mapped[str | None] = mapped_column(String(500))
    weights_path: Mapped[str | None] = mapped_column(String(500))
    weights_size: Mapped[int | None] = mapped_column(BigInteger)
    weights_url: Mapped[str | None] = mapped_column(String(1000))  # the trainer's output; expires
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]

    @property
    def ready(self) -> bool:
        return self.status == self.READY

    @property
    def ended(self) -> bool:
        return self.status in self.ENDED

