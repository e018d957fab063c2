"""The images models made: one row per output image, in the gallery or staged on a canvas."""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow


class Generation(db.Model):
    """One output image with everything needed to make it again."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"), index=True)
    model_ref: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int | None]
    output_index: Mapped[int] = mapped_column(default=0)
    path: Mapped[str] = mapped_column(String(500))  # relative to DATA_DIR
    width: Mapped[int]
    height: Mapped[int]
    # in_gallery is False for canvas variations until the user keeps one.
    in_gallery: Mapped[bool] = mapped_column(default=True, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
