"""Models a user can run, and the images they made."""
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import utcnow


class ModelEntry(db.Model):
    """A model in the picker: a shipped preset (user_id NULL) or one a user added, with its cached schema."""

    __table_args__ = (UniqueConstraint("user_id", "ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    ref: Mapped[str] = mapped_column(String(200))  # owner/name or owner/name:version
    label: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="text-to-image")  # text-to-image, inpaint, caption
    mask_polarity: Mapped[str | None] = mapped_column(String(32))
    openapi_schema: Mapped[dict | None] = mapped_column(JSON)
    schema_fetched_at: Mapped[datetime | None]


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
